//! This process and others, as the operations table records them: pid,
//! start time and boot id tell a live process from a dead one whose pid was
//! reused or whose machine rebooted.

use std::sync::OnceLock;

/// The kernel's id of this boot (changes at every reboot).
pub fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// When process `pid` started, in clock ticks since boot (`None`: no such process).
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: skip past its end.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

pub fn this_pid() -> u32 {
    std::process::id()
}

pub fn this_start() -> u64 {
    static START: OnceLock<u64> = OnceLock::new();
    *START.get_or_init(|| start_time(this_pid()).unwrap_or(0))
}

/// This node's identity: what backups record as their `host`, operations
/// and leases as their holder's. `STRATA_HOST` if set, else what
/// [`use_host_name`] was given (the config's `host`), else the machine's
/// hostname. Several nodes may run on one machine under names of their
/// own: a process of another name is judged as a remote one, by its
/// heartbeat, never by its pid.
pub fn host_name() -> String {
    HOST.get_or_init(|| {
        std::env::var("STRATA_HOST")
            .ok()
            .filter(|h| check_host(h).is_ok())
            .unwrap_or_else(machine_name)
    })
    .clone()
}

static HOST: OnceLock<String> = OnceLock::new();

fn machine_name() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

/// Makes `name` this node's identity unless `STRATA_HOST` names one. Must
/// come before anything reads the identity: refused once it is settled.
pub fn use_host_name(name: &str) -> crate::Result<()> {
    check_host(name)?;
    if std::env::var_os("STRATA_HOST").is_some() {
        return Ok(());
    }
    match HOST.set(name.to_string()) {
        Ok(()) => Ok(()),
        Err(_) if HOST.get().map(String::as_str) == Some(name) => Ok(()),
        Err(_) => Err(crate::Error::Bug(
            "the node's identity was read before it was set".into(),
        )),
    }
}

/// A node identity: 1–253 of letters, digits, `.`, `-` and `_`.
pub fn check_host(name: &str) -> crate::Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
    match ok {
        true => Ok(()),
        false => Err(crate::Error::InvalidArgument(format!(
            "invalid node identity {name:?}: 1-253 letters, digits, '.', '-' or '_'"
        ))),
    }
}

/// Whether the process recorded as (`host`, `boot`, `pid`, `start`) still
/// runs. Only answerable for this host; other hosts answer `None`.
pub fn is_alive(host: &str, boot: &str, pid: u32, start: u64) -> Option<bool> {
    if host != host_name() {
        return None;
    }
    if boot != boot_id() {
        return Some(false);
    }
    Some(start_time(pid) == Some(start))
}

/// The owner tag of this process's temporary files: `host~pid~start`
/// (host names may hold dots, never `~`).
pub fn owner_tag() -> String {
    tag(&host_name(), this_pid(), this_start())
}

pub fn tag(host: &str, pid: u32, start: u64) -> String {
    format!("{host}~{pid}~{start}")
}

/// The (host, pid, start) of a temporary file's name, if it has a tag.
pub fn parse_tag(name: &str) -> Option<(&str, u32, u64)> {
    let mut parts = name.splitn(4, '~');
    let host = parts.next()?;
    let pid = parts.next()?.parse().ok()?;
    let start = parts.next()?.parse().ok()?;
    parts.next()?;
    Some((host, pid, start))
}

/// A process as the repository names it: in the names of its unfinished
/// puts and in the locks it holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tag {
    pub host: String,
    pub pid: u32,
    pub start: u64,
}

impl Tag {
    pub fn this() -> Tag {
        Tag {
            host: host_name(),
            pid: this_pid(),
            start: this_start(),
        }
    }

    /// The tag a name starts with (`host~pid~start~...`).
    pub fn parse(name: &str) -> Option<Tag> {
        let (host, pid, start) = parse_tag(name)?;
        Some(Tag {
            host: host.to_string(),
            pid,
            start,
        })
    }

    /// Whether this process is known to be gone: only answerable on its
    /// own host.
    pub fn is_gone(&self) -> bool {
        is_alive(&self.host, &boot_id(), self.pid, self.start) == Some(false)
    }
}

impl std::fmt::Display for Tag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&tag(&self.host, self.pid, self.start))
    }
}
