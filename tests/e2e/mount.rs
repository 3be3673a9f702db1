//! `strata mount`: the backups as a read-only FUSE file system, read with
//! `cp -a` and compared with a full restore of the same backup.

use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::*;

/// Whether this machine can mount with FUSE; where it cannot, the test says
/// so loudly, and fails when `STRATA_REQUIRE_FUSE=1` (CI sets it where the
/// kernel offers FUSE).
fn fuse_or_skip(test: &str) -> bool {
    let why = if !Path::new("/dev/fuse").exists() {
        Some("/dev/fuse is missing")
    } else if !is_root() {
        Some("mounting needs root here")
    } else {
        None
    };
    match why {
        None => true,
        Some(why) if std::env::var_os("STRATA_REQUIRE_FUSE").is_some() => {
            panic!("{test}: STRATA_REQUIRE_FUSE=1 but {why}")
        }
        Some(why) => {
            eprintln!("!!!!!!!! SKIPPED {test}: {why}");
            false
        }
    }
}

/// A running `strata mount`, stopped (SIGINT) and waited for on drop.
struct Mounted {
    child: Option<Child>,
}

impl Mounted {
    fn start(env: &Env, at: &Path) -> Mounted {
        fs::create_dir_all(at).expect("mountpoint");
        let child = env
            .command(&["mount", at.to_str().expect("utf8")])
            .stderr(Stdio::piped())
            .spawn()
            .expect("strata mount");
        let mounted = Mounted { child: Some(child) };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !at.join("share").exists() {
            assert!(Instant::now() < deadline, "the mount did not appear");
            std::thread::sleep(Duration::from_millis(50));
        }
        mounted
    }

    /// Stops the mount as Ctrl-C does; returns its exit status.
    fn stop(&mut self) -> std::process::ExitStatus {
        let child = self.child.as_mut().expect("running");
        let pid = rustix::process::Pid::from_raw(child.id() as i32).expect("pid");
        rustix::process::kill_process(pid, rustix::process::Signal::INT).expect("kill");
        let status = child.wait().expect("wait");
        self.child = None;
        status
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if self.child.is_some() {
            let _ = self.stop();
        }
    }
}

fn mounted(at: &Path) -> bool {
    let mounts = fs::read_to_string("/proc/self/mounts").expect("mounts");
    let at = at.to_str().expect("utf8");
    mounts.lines().any(|l| l.split(' ').nth(1) == Some(at))
}

#[test]
fn a_mounted_backup_copies_out_as_its_restore() {
    if !fuse_or_skip("a_mounted_backup_copies_out_as_its_restore") {
        return;
    }
    let env = Env::new();
    let share = env.path("share");
    build_tree(&share);
    let first = backup(&env, &share)["id"].as_str().expect("id").to_string();
    fs::write(share.join("docs/added.txt"), b"in the second backup only").expect("write");
    let second = incremental_backup(&env, &share)["id"]
        .as_str()
        .expect("id")
        .to_string();
    env.strata(&["backup", "set", &second, "--name", "nightly"])
        .ok();

    let mnt = env.path("mnt");
    let mut mount = Mounted::start(&env, &mnt);
    let backups: Vec<String> = fs::read_dir(mnt.join("share"))
        .expect("share dir")
        .map(|e| e.expect("entry").file_name().into_string().expect("utf8"))
        .collect();
    assert_eq!(backups.len(), 2, "{backups:?}");
    assert!(backups.contains(&"nightly".to_string()), "{backups:?}");

    for (id, dir) in [
        (&second, "nightly".to_string()),
        (
            &first,
            backups
                .iter()
                .find(|b| *b != "nightly")
                .expect("first")
                .clone(),
        ),
    ] {
        let restored = env.path(&format!("restored-{id}"));
        restore_to(&env, id, &restored).ok();
        let copied = env.path(&format!("copied-{id}"));
        let cp = Command::new("cp")
            .arg("-a")
            .arg(mnt.join("share").join(&dir))
            .arg(&copied)
            .status()
            .expect("cp");
        assert!(cp.success(), "cp -a from the mount failed");
        let mut expected = snapshot(&restored);
        let mut got = snapshot(&copied);
        // cp -a gives the copy's root the mount's; compare what is below it.
        expected.remove(Path::new(""));
        got.remove(Path::new(""));
        assert_same(&expected, &got);
    }
    // A backup by its id, and a path that is not there.
    assert!(mnt.join("share").join(&first).join("hello.txt").exists());
    assert!(!mnt.join("share/nightly/no-such-file").exists());
    assert!(
        fs::write(mnt.join("share/nightly/hello.txt"), b"x").is_err(),
        "the mount is read-only"
    );

    let status = mount.stop();
    assert!(status.success(), "strata mount ended with {status}");
    assert!(!mounted(&mnt), "still mounted after Ctrl-C");
}

#[test]
fn mount_refuses_a_mountpoint_that_is_not_a_directory() {
    let env = Env::new();
    let file = env.path("file");
    fs::write(&file, b"").expect("write");
    env.strata(&["mount", file.to_str().expect("utf8")])
        .fails(2, "not a directory");
}
