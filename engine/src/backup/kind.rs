//! What the walk found at one path: the vocabulary the walk, the parent
//! diff and the read-ahead share (each imports it from here, none from
//! another).

/// What the walk found at one path.
pub enum ItemKind {
    File,
    Dir,
    Symlink,
    /// Another name of an inode first seen at this (stored) path.
    Hardlink(Vec<u8>),
    /// Nothing to back up (a skipped or unreadable entry); keeps the numbering.
    Nothing,
}
