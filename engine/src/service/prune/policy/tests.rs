use super::*;
use proptest::prelude::*;

const DAY: i64 = 86_400 * 1_000_000_000;
const HOUR: i64 = 3_600 * 1_000_000_000;

fn id(n: u32) -> BackupId {
    let mut b = [0u8; 16];
    b[..4].copy_from_slice(&n.to_be_bytes());
    BackupId(b)
}

/// Unix ns of a UTC date at `hour`.
fn at(year: i64, month: u32, day: u32, hour: i64) -> i64 {
    days_from_civil(year, month, day) * DAY + hour * HOUR
}

fn kept(verdicts: &[Verdict]) -> Vec<BackupId> {
    let mut ids: Vec<BackupId> = verdicts
        .iter()
        .filter(|v| !v.kept_by.is_empty())
        .map(|v| v.id)
        .collect();
    ids.sort();
    ids
}

fn nightly(n: u32, from: i64) -> Vec<Candidate> {
    (0..n)
        .map(|i| Candidate {
            id: id(i),
            time_ns: from + i64::from(i) * DAY,
        })
        .collect()
}

#[test]
fn calendar_dates_and_iso_weeks() {
    assert_eq!(civil(0), (1970, 1, 1));
    assert_eq!(civil(days_from_civil(2000, 2, 29)), (2000, 2, 29));
    assert_eq!(civil(-1), (1969, 12, 31));
    // 2021-01-03 (a Sunday) is in week 53 of 2020; the 4th starts week 1.
    assert_eq!(iso_week(at(2021, 1, 3, 12) / 1_000_000_000), 202053);
    assert_eq!(iso_week(at(2021, 1, 4, 0) / 1_000_000_000), 202101);
    // 2024-12-30 (a Monday) is in week 1 of 2025.
    assert_eq!(iso_week(at(2024, 12, 30, 0) / 1_000_000_000), 202501);
    assert_eq!(iso_week(at(2026, 12, 2, 0) / 1_000_000_000), 202649);
}

#[test]
fn keep_last_keeps_the_newest() {
    let c = nightly(10, at(2026, 11, 1, 2));
    let v = apply(
        &Retention {
            last: Some(3),
            ..Retention::default()
        },
        &c,
    );
    assert_eq!(kept(&v), vec![id(7), id(8), id(9)]);
    assert!(v[0].kept_by == vec![Rule::Last] && v[0].id == id(9));
}

#[test]
fn keep_last_and_weekly_over_thirty_nights() {
    // 2026-11-01 is a Sunday; nights 0..30 run to 2026-11-30 (a Monday).
    let c = nightly(30, at(2026, 11, 1, 2));
    let v = apply(
        &Retention {
            last: Some(3),
            weekly: Some(2),
            ..Retention::default()
        },
        &c,
    );
    // Last 3: nights 27, 28, 29. Weekly: night 29 (week of Nov 30) and
    // night 28 (Sunday Nov 29, the newest of the week before).
    assert_eq!(kept(&v), vec![id(27), id(28), id(29)]);
    let night28 = v.iter().find(|x| x.id == id(28)).map(|x| x.kept_by.clone());
    assert_eq!(night28, Some(vec![Rule::Last, Rule::Weekly]));
}

#[test]
fn daily_keeps_the_newest_of_each_day() {
    let mut c = Vec::new();
    for day in 0..4u32 {
        for h in 0..3u32 {
            c.push(Candidate {
                id: id(day * 10 + h),
                time_ns: at(2026, 6, 1 + day, i64::from(h) * 6),
            });
        }
    }
    let v = apply(
        &Retention {
            daily: Some(3),
            ..Retention::default()
        },
        &c,
    );
    assert_eq!(kept(&v), vec![id(12), id(22), id(32)]);
}

#[test]
fn within_counts_back_from_the_newest_backup() {
    let c = nightly(10, at(2020, 1, 1, 0));
    let v = apply(
        &Retention {
            within: Some(Duration::from_secs(2 * 86_400)),
            ..Retention::default()
        },
        &c,
    );
    assert_eq!(kept(&v), vec![id(7), id(8), id(9)]);
}

#[test]
fn an_empty_policy_is_reported_empty() {
    assert!(Retention::default().is_empty());
    assert!(!Retention {
        yearly: Some(1),
        ..Retention::default()
    }
    .is_empty());
}

proptest! {
    #[test]
    fn day_numbers_round_trip(days in -1_000_000i64..1_000_000) {
        let (y, m, d) = civil(days);
        prop_assert_eq!(days_from_civil(y, m, d), days);
        prop_assert!((1..=12).contains(&m) && (1..=31).contains(&d));
    }

    #[test]
    fn verdicts_are_bounded_and_order_free(
        times in proptest::collection::vec(0i64..(400 * DAY), 1..60),
        last in proptest::option::of(0u32..5),
        daily in proptest::option::of(0u32..5),
        weekly in proptest::option::of(0u32..5),
        monthly in proptest::option::of(0u32..5),
    ) {
        let policy = Retention { last, daily, weekly, monthly, ..Retention::default() };
        let c: Vec<Candidate> = times
            .iter()
            .enumerate()
            .map(|(i, t)| Candidate { id: id(i as u32), time_ns: *t })
            .collect();
        let v = apply(&policy, &c);
        prop_assert_eq!(v.len(), c.len());
        let budget: u32 = [last, daily, weekly, monthly].iter().map(|n| n.unwrap_or(0)).sum();
        prop_assert!(kept(&v).len() as u32 <= budget);
        // Any rule with a count keeps the newest backup.
        if budget > 0 && [last, daily, weekly, monthly].iter().any(|n| n.unwrap_or(0) > 0) {
            prop_assert!(!v[0].kept_by.is_empty());
        }
        let mut reversed = c.clone();
        reversed.reverse();
        prop_assert_eq!(kept(&apply(&policy, &reversed)), kept(&v));
    }
}
