//! Which backups a retention policy keeps: restic's `forget` semantics.
//!
//! Backups are taken newest first. `keep_last` keeps the newest N. Each
//! calendar rule (hourly … yearly) keeps the newest backup of each of its
//! last N periods that hold one: a backup is kept by the rule when its
//! period differs from that of the last backup the rule kept. `keep_within`
//! keeps every backup taken within that duration before the newest one.
//! A backup no rule keeps is removed. Periods are in UTC; weeks are ISO
//! weeks (Monday first).

use std::time::Duration;

use strata_format::BackupId;

use crate::clock::{civil_from_days as civil, days_from_civil};

/// How many of each kind of period to keep; `None` means the rule is off.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Retention {
    pub last: Option<u32>,
    pub hourly: Option<u32>,
    pub daily: Option<u32>,
    pub weekly: Option<u32>,
    pub monthly: Option<u32>,
    pub yearly: Option<u32>,
    pub within: Option<Duration>,
}

impl Retention {
    /// Whether no rule is set (such a policy would remove everything).
    pub fn is_empty(&self) -> bool {
        *self == Retention::default()
    }

    /// Whether the policy can keep no backup at all: every rule is off or
    /// zero (`--keep-last 0`, `--keep-within 0d`). Such a policy is a
    /// deletion of everything, which is refused.
    pub fn keeps_nothing(&self) -> bool {
        let counts = [
            self.last,
            self.hourly,
            self.daily,
            self.weekly,
            self.monthly,
            self.yearly,
        ];
        counts.iter().all(|n| n.unwrap_or(0) == 0) && self.within.is_none_or(|d| d.is_zero())
    }
}

/// A rule that kept a backup.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Rule {
    Last,
    Hourly,
    Daily,
    Weekly,
    Monthly,
    Yearly,
    Within,
}

impl Rule {
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::Last => "last",
            Rule::Hourly => "hourly",
            Rule::Daily => "daily",
            Rule::Weekly => "weekly",
            Rule::Monthly => "monthly",
            Rule::Yearly => "yearly",
            Rule::Within => "within",
        }
    }
}

/// One backup to judge: its id and when its data was taken (Unix ns).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub id: BackupId,
    pub time_ns: i64,
}

/// The verdict on one backup: the rules that keep it (empty: removed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub id: BackupId,
    pub time_ns: i64,
    pub kept_by: Vec<Rule>,
}

/// The period (hour, day, week, …) a Unix time in seconds falls in.
type PeriodOf = fn(i64) -> i64;

/// Applies `policy` to one share's backups; verdicts come newest first.
pub fn apply(policy: &Retention, candidates: &[Candidate]) -> Vec<Verdict> {
    let mut sorted = candidates.to_vec();
    // Newest first; ties broken by id so the outcome never depends on input order.
    sorted.sort_by(|a, b| b.time_ns.cmp(&a.time_ns).then(b.id.cmp(&a.id)));
    let newest = sorted.first().map(|c| c.time_ns);
    let calendar: [(Rule, Option<u32>, PeriodOf); 5] = [
        (Rule::Hourly, policy.hourly, |t| t.div_euclid(3_600)),
        (Rule::Daily, policy.daily, |t| t.div_euclid(86_400)),
        (Rule::Weekly, policy.weekly, iso_week),
        (Rule::Monthly, policy.monthly, |t| {
            let (y, m, _) = civil(t.div_euclid(86_400));
            y * 12 + i64::from(m)
        }),
        (Rule::Yearly, policy.yearly, |t| {
            civil(t.div_euclid(86_400)).0
        }),
    ];
    let mut left: Vec<Option<u32>> = calendar.iter().map(|(_, n, _)| *n).collect();
    let mut last_period: Vec<Option<i64>> = vec![None; calendar.len()];
    let mut last_left = policy.last;
    let mut out = Vec::with_capacity(sorted.len());
    for c in sorted {
        let mut kept_by = Vec::new();
        if let Some(n) = last_left.as_mut() {
            if *n > 0 {
                *n -= 1;
                kept_by.push(Rule::Last);
            }
        }
        let secs = c.time_ns.div_euclid(1_000_000_000);
        for (i, (rule, _, period_of)) in calendar.iter().enumerate() {
            let Some(n) = left[i].as_mut() else { continue };
            let period = period_of(secs);
            if *n > 0 && last_period[i] != Some(period) {
                *n -= 1;
                last_period[i] = Some(period);
                kept_by.push(*rule);
            }
        }
        if let (Some(within), Some(newest)) = (policy.within, newest) {
            let span = i64::try_from(within.as_nanos()).unwrap_or(i64::MAX);
            if c.time_ns >= newest.saturating_sub(span) {
                kept_by.push(Rule::Within);
            }
        }
        out.push(Verdict {
            id: c.id,
            time_ns: c.time_ns,
            kept_by,
        });
    }
    out
}

/// The ISO week of a Unix time, as `year * 100 + week`.
fn iso_week(secs: i64) -> i64 {
    let days = secs.div_euclid(86_400);
    // 1970-01-01 was a Thursday; Monday is 0.
    let weekday = (days + 3).rem_euclid(7);
    // The week belongs to the year of its Thursday.
    let thursday = days - weekday + 3;
    let (year, _, _) = civil(thursday);
    let jan1 = days_from_civil(year, 1, 1);
    year * 100 + (thursday - jan1) / 7 + 1
}

#[cfg(test)]
mod tests;
