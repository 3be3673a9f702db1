//! What NFS errors mean to the repository: worth retrying, or final, and
//! which I/O error kind an operator should see.

use std::io::ErrorKind;

use nfs_rs::{Nfs3ErrorCode as E3, Nfs4ErrorCode as E4, NfsError};

/// The error under the client's retry and outcome wrappers.
fn root(e: &NfsError) -> &NfsError {
    match e {
        NfsError::OperationOutcome(o) => root(&o.source),
        NfsError::ServerBusy(b) => root(&b.source),
        other => other,
    }
}

/// True when the call may succeed if repeated, possibly on a new
/// connection: the server is busy, restarting, or unreachable for now.
pub fn is_transient(e: &NfsError) -> bool {
    if e.is_connection_lost() || e.is_server_busy() {
        return true;
    }
    match root(e) {
        NfsError::Io(io) => matches!(
            io.kind(),
            ErrorKind::TimedOut
                | ErrorKind::ConnectionRefused
                | ErrorKind::ConnectionReset
                | ErrorKind::ConnectionAborted
                | ErrorKind::BrokenPipe
                | ErrorKind::UnexpectedEof
                | ErrorKind::NotConnected
                | ErrorKind::Interrupted
                | ErrorKind::WouldBlock
        ),
        NfsError::Rpc(_)
        | NfsError::ClientClosed(_)
        | NfsError::ClosedResource(_)
        | NfsError::LostOpenState(_)
        | NfsError::PositionUncertain(_) => true,
        NfsError::Nfs3(code) => matches!(code, E3::NFS3ERR_JUKEBOX | E3::NFS3ERR_STALE),
        NfsError::Nfs4(code) => matches!(
            code,
            E4::NFS4ERR_DELAY
                | E4::NFS4ERR_GRACE
                | E4::NFS4ERR_STALE
                | E4::NFS4ERR_FHEXPIRED
                | E4::NFS4ERR_STALE_CLIENTID
                | E4::NFS4ERR_STALE_STATEID
                | E4::NFS4ERR_EXPIRED
                | E4::NFS4ERR_BAD_STATEID
                | E4::NFS4ERR_OLD_STATEID
                | E4::NFS4ERR_ADMIN_REVOKED
                | E4::NFS4ERR_BADSESSION
                | E4::NFS4ERR_DEADSESSION
                | E4::NFS4ERR_CONN_NOT_BOUND_TO_SESSION
                | E4::NFS4ERR_SEQ_MISORDERED
                | E4::NFS4ERR_LEASE_MOVED
                | E4::NFS4ERR_MOVED
        ),
        _ => false,
    }
}

/// An `io::Error` whose kind tells the engine what happened (no space,
/// permission, not found, exists) and whose text names the NFS status.
pub fn to_io(e: &NfsError) -> std::io::Error {
    let kind = match root(e) {
        NfsError::Nfs3(code) => match code {
            E3::NFS3ERR_NOENT => ErrorKind::NotFound,
            E3::NFS3ERR_EXIST => ErrorKind::AlreadyExists,
            E3::NFS3ERR_NOSPC | E3::NFS3ERR_DQUOT => ErrorKind::StorageFull,
            E3::NFS3ERR_ACCES | E3::NFS3ERR_PERM | E3::NFS3ERR_ROFS => ErrorKind::PermissionDenied,
            E3::NFS3ERR_NOTDIR => ErrorKind::NotADirectory,
            E3::NFS3ERR_ISDIR => ErrorKind::IsADirectory,
            _ => ErrorKind::Other,
        },
        NfsError::Nfs4(code) => match code {
            E4::NFS4ERR_NOENT => ErrorKind::NotFound,
            E4::NFS4ERR_EXIST => ErrorKind::AlreadyExists,
            E4::NFS4ERR_NOSPC | E4::NFS4ERR_DQUOT => ErrorKind::StorageFull,
            E4::NFS4ERR_ACCESS | E4::NFS4ERR_PERM | E4::NFS4ERR_ROFS | E4::NFS4ERR_WRONGSEC => {
                ErrorKind::PermissionDenied
            }
            E4::NFS4ERR_NOTDIR => ErrorKind::NotADirectory,
            E4::NFS4ERR_ISDIR => ErrorKind::IsADirectory,
            _ => ErrorKind::Other,
        },
        NfsError::Mount(_) => ErrorKind::PermissionDenied,
        other => other.kind(),
    };
    let text = match kind {
        ErrorKind::StorageFull => format!("no space left on the export ({e})"),
        ErrorKind::PermissionDenied => format!("permission denied by the NFS server ({e})"),
        _ => e.to_string(),
    };
    std::io::Error::new(kind, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_kinds() {
        let full = to_io(&NfsError::Nfs4(E4::NFS4ERR_NOSPC));
        assert_eq!(full.kind(), ErrorKind::StorageFull);
        assert!(full.to_string().contains("no space"), "{full}");
        assert_eq!(
            to_io(&NfsError::Nfs3(E3::NFS3ERR_NOSPC)).kind(),
            ErrorKind::StorageFull
        );
        assert_eq!(
            to_io(&NfsError::Nfs3(E3::NFS3ERR_ACCES)).kind(),
            ErrorKind::PermissionDenied
        );
        assert_eq!(
            to_io(&NfsError::Nfs4(E4::NFS4ERR_EXIST)).kind(),
            ErrorKind::AlreadyExists
        );
        assert!(is_transient(&NfsError::Nfs4(E4::NFS4ERR_DELAY)));
        assert!(is_transient(&NfsError::Nfs3(E3::NFS3ERR_JUKEBOX)));
        assert!(is_transient(&NfsError::Nfs3(E3::NFS3ERR_STALE)));
        assert!(is_transient(&NfsError::Io(
            ErrorKind::ConnectionReset.into()
        )));
        assert!(!is_transient(&NfsError::Nfs4(E4::NFS4ERR_NOSPC)));
        assert!(!is_transient(&NfsError::Nfs4(E4::NFS4ERR_ACCESS)));
    }
}
