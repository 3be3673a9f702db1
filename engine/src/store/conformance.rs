//! The contract of [`ServiceStore`], as a suite any implementation runs on
//! a fresh, empty store: names unique per project, compare-and-set that
//! changes nothing when it finds another status, admission checked with the
//! write (quota, parent), leaf-only deletes, shares released only when no
//! operation holds them, heartbeats that only grow, and concurrent admission
//! that never exceeds a quota.

use std::sync::Arc;

use strata_format::{BackupId, ShareId};

use super::{
    Admission, Admitted, BackupRecord, BackupStatus, OpKind, Operation, Quota, ServiceStore, Share,
    ShareStatus,
};
use crate::error::Error;

/// What broke the contract.
#[derive(Debug)]
pub struct Failure(pub String);

fn check(ok: bool, what: &str) -> Result<(), Failure> {
    match ok {
        true => Ok(()),
        false => Err(Failure(what.to_string())),
    }
}

fn ok<T>(r: crate::error::Result<T>, what: &str) -> Result<T, Failure> {
    r.map_err(|e| Failure(format!("{what}: {e}")))
}

fn share(n: u8, project: &str, name: &str) -> Share {
    Share {
        id: ShareId([n; 16]),
        project: project.into(),
        name: name.into(),
        path: format!("/srv/{name}"),
        size_gib: Some(1),
        protocol: "NFS".into(),
        status: ShareStatus::Available,
        created_at: 1,
        updated_at: None,
        source_backup_id: None,
        fail_reason: None,
        adopted: false,
    }
}

fn admission(parent: Option<BackupId>, backups: Option<u64>) -> Admission {
    Admission {
        parent,
        quota: Quota {
            backups,
            backup_gigabytes: None,
        },
        estimate_gib: 1,
        snapshot: None,
    }
}

fn operation(id: &str, share: Option<ShareId>) -> Operation {
    Operation {
        id: id.into(),
        kind: OpKind::Restore,
        backup_id: None,
        share_id: share,
        share_status_before: None,
        pid: 1,
        process_start: 1,
        host: "elsewhere".into(),
        boot_id: "boot".into(),
        started_at: 1,
        heartbeat_at: 1,
    }
}

/// Runs the whole contract against `store`, which must be empty.
pub fn run(store: &dyn ServiceStore) -> Result<(), Failure> {
    let s1 = share(1, "p", "one");
    ok(store.insert_share(&s1), "insert a share")?;
    check(
        matches!(
            store.insert_share(&share(2, "p", "one")),
            Err(Error::InvalidArgument(_))
        ),
        "a second share of one name in a project is refused",
    )?;
    ok(
        store.insert_share(&share(3, "q", "one")),
        "the same name in another project",
    )?;
    check(
        matches!(store.find_share("q", "nope"), Err(Error::NotFound { .. })),
        "an unknown share is not found",
    )?;
    check(
        store.find_share("q", &s1.id.to_string()).is_err(),
        "another project's share is not found by id",
    )?;
    // Compare-and-set on shares.
    let wrong = store.transition_share(s1.id, &[ShareStatus::InUse], ShareStatus::Error);
    check(
        matches!(wrong, Err(Error::Busy(_))),
        "a share CAS from another status is Busy",
    )?;
    check(
        ok(store.share(s1.id), "share")?.status == ShareStatus::Available,
        "a refused CAS changes nothing",
    )?;
    // Admission: parent and quota checked with the write.
    let full = BackupRecord::new(BackupId([1; 16]), "p".into(), s1.id, 1);
    check(
        ok(
            store.insert_backup(&full, &admission(None, Some(1))),
            "admit",
        )? == Admitted::Yes,
        "a backup within its quota is admitted",
    )?;
    let second = BackupRecord::new(BackupId([2; 16]), "p".into(), s1.id, 2);
    check(
        matches!(
            ok(
                store.insert_backup(&second, &admission(None, Some(1))),
                "admit"
            )?,
            Admitted::OverQuota(_)
        ),
        "a backup over the quota is refused",
    )?;
    check(
        store.backup(second.id).is_err(),
        "a refused admission writes nothing",
    )?;
    check(
        matches!(
            ok(
                store.insert_backup(&second, &admission(Some(full.id), None)),
                "admit"
            )?,
            Admitted::ParentGone(Some(BackupStatus::Creating))
        ),
        "an incremental on a parent that is not available is refused",
    )?;
    ok(
        store.transition_backup(full.id, &[BackupStatus::Creating], BackupStatus::Available),
        "creating -> available",
    )?;
    check(
        matches!(
            store.transition_backup(full.id, &[BackupStatus::Creating], BackupStatus::Error),
            Err(Error::InvalidState(_))
        ),
        "a backup CAS from another status is InvalidState",
    )?;
    let mut child = second.clone();
    child.parent_id = Some(full.id);
    child.is_incremental = true;
    check(
        ok(
            store.insert_backup(&child, &admission(Some(full.id), None)),
            "admit",
        )? == Admitted::Yes,
        "an incremental on an available parent is admitted",
    )?;
    check(
        store
            .dependents(full.id)
            .map(|d| d == vec![child.id])
            .unwrap_or(false),
        "dependents names the child",
    )?;
    check(
        matches!(
            store.transition_leaf_backup(
                full.id,
                &[BackupStatus::Available],
                BackupStatus::Deleting
            ),
            Err(Error::InvalidState(_))
        ),
        "a backup with dependents is not moved to deleting",
    )?;
    check(
        matches!(
            store.delete_share(s1.id, &[ShareStatus::Available]),
            Err(Error::InvalidState(_))
        ),
        "a share with backups is not deleted",
    )?;
    // Shares released only when no operation holds them.
    ok(
        store.reset_share_status(s1.id, ShareStatus::BackupRestoring),
        "reset share status",
    )?;
    ok(
        store.insert_operation(&operation("op-1", Some(s1.id))),
        "insert operation",
    )?;
    let release = || {
        ok(
            store.release_orphan_share(
                s1.id,
                ShareStatus::BackupRestoring,
                ShareStatus::BackupRestoringError,
                "gone",
            ),
            "release",
        )
    };
    let held = release()?;
    check(!held, "a share an operation holds is not released")?;
    // Heartbeats only grow, whatever the store's clock does.
    let beat = |store: &dyn ServiceStore| -> Result<i64, Failure> {
        let ops = ok(store.operations(), "operations")?;
        ops.iter()
            .find(|o| o.id == "op-1")
            .map(|o| o.heartbeat_at)
            .ok_or_else(|| Failure("the operation is recorded".into()))
    };
    let before = beat(store)?;
    ok(store.heartbeat("op-1"), "heartbeat")?;
    let after = beat(store)?;
    ok(store.heartbeat("op-1"), "heartbeat")?;
    check(
        before < after && after < beat(store)?,
        "each heartbeat grows the stamp",
    )?;
    ok(store.remove_operation("op-1"), "remove operation")?;
    let released = release()?;
    check(released, "a busy share no operation holds is released")?;
    let now = ok(store.share(s1.id), "share")?;
    check(
        now.status == ShareStatus::BackupRestoringError
            && now.fail_reason.as_deref() == Some("gone"),
        "the released share has its status and reason",
    )?;
    // Confirming a path clears adoption.
    let mut adopted = share(4, "p", "adopted");
    adopted.adopted = true;
    ok(store.insert_share(&adopted), "insert an adopted share")?;
    ok(
        store.confirm_share_path(adopted.id, "/srv/moved", &[ShareStatus::Available]),
        "confirm path",
    )?;
    let now = ok(store.share(adopted.id), "share")?;
    check(
        !now.adopted && now.path == "/srv/moved",
        "a confirmed path is the share's, not adopted",
    )?;
    Ok(())
}

/// Concurrent admission: many threads admit backups under a quota of five;
/// exactly five go in.
pub fn run_concurrent(store: Arc<dyn ServiceStore>) -> Result<(), Failure> {
    let s = share(9, "c", "contended");
    ok(store.insert_share(&s), "insert a share")?;
    let threads: Vec<_> = (0..16u8)
        .map(|n| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                let b = BackupRecord::new(BackupId([100 + n; 16]), "c".into(), s.id, i64::from(n));
                store.insert_backup(&b, &admission(None, Some(5)))
            })
        })
        .collect();
    let mut admitted = 0;
    for t in threads {
        let r = t
            .join()
            .map_err(|_| Failure("an admitting thread panicked".into()))?;
        if ok(r, "concurrent admission")? == Admitted::Yes {
            admitted += 1;
        }
    }
    check(
        admitted == 5,
        "concurrent admissions never exceed the quota",
    )?;
    let usage = ok(store.quota_usage("c"), "usage")?;
    check(usage.backups == 5, "the usage counts what was admitted")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Catalog;

    #[test]
    fn conformance_service_store_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        run(&Catalog::open(&dir.path().join("a.db")).unwrap()).unwrap();
        run_concurrent(Arc::new(Catalog::open(&dir.path().join("b.db")).unwrap())).unwrap();
    }

    #[test]
    fn conformance_service_store_postgres() {
        let test = "conformance_service_store_postgres";
        let Some(a) = crate::pg::testing::fresh_database(test).unwrap() else {
            return;
        };
        run(&crate::pg::PgCatalog::open(&a).unwrap()).unwrap();
        let b = crate::pg::testing::fresh_database(test).unwrap().unwrap();
        run_concurrent(Arc::new(crate::pg::PgCatalog::open(&b).unwrap())).unwrap();
    }
}
