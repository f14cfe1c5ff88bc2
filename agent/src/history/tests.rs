//! Tests of the spending history: roll-up, bounds, the text format, the file.

use super::*;
use proptest::prelude::*;
use std::fs;
use std::path::Path;

/// 2026-12-03 00:00:00 UTC.
const MIDNIGHT: i64 = 1_796_256_000;
const NOON: i64 = MIDNIGHT + 12 * HOUR;

fn tally(requests: u64, bytes: u64, spent: i64) -> Tally {
    Tally {
        requests,
        bytes,
        spent,
    }
}

mod record {
    use super::*;

    #[test]
    fn adds_up_per_site_per_hour() {
        let mut h = History::new();
        h.record(NOON + 5, "a.example", 1, 100, 50);
        h.record(NOON + 3_599, "a.example", 2, 10, 7);
        h.record(NOON + 3_600, "a.example", 1, 1, 1);
        h.record(NOON, "b.example", 1, 1, 3);
        let hours = h.hours(NOON + 3_600);
        assert_eq!(hours.len(), 24);
        let (start, sites) = &hours[22];
        assert_eq!(*start, NOON);
        assert_eq!(
            sites,
            &vec![
                ("a.example".to_string(), tally(3, 110, 57)),
                ("b.example".to_string(), tally(1, 1, 3)),
            ]
        );
        assert_eq!(hours[23].1, vec![("a.example".to_string(), tally(1, 1, 1))]);
    }

    #[test]
    fn a_full_bucket_merges_the_least_spent_into_other() {
        let mut h = History::new();
        for i in 0..20 {
            h.record(NOON, &format!("s{i:02}"), 1, 1, 100 + i);
        }
        let sites = &h.hours(NOON)[23].1;
        assert_eq!(sites.len(), MAX_SITES);
        // s05..s19 are the 15 most spent; s00..s04 went into other.
        assert!(sites.iter().any(|(s, _)| s == "s05"));
        assert!(!sites.iter().any(|(s, _)| s == "s04"));
        let other = sites.iter().find(|(s, _)| s == OTHER).map(|(_, t)| *t);
        assert_eq!(other, Some(tally(5, 5, 100 + 101 + 102 + 103 + 104)));
        assert_eq!(h.total(), tally(20, 20, (100..120).sum()));
    }

    #[test]
    fn a_wild_clock_cannot_grow_the_buckets() {
        let mut h = History::new();
        for i in 0..1_000 {
            h.record(i * 7_919 * HOUR, "a", 1, 1, 1);
        }
        assert!(h.hours.len() <= MAX_HOUR_BUCKETS);
        assert!(h.days.len() <= MAX_DAY_BUCKETS);
        assert_eq!(h.total(), tally(1_000, 1_000, 1_000));
        h.record(i64::MIN, "a", 1, 1, 1);
        h.record(i64::MAX, "a", 1, 1, 1);
        assert_eq!(h.total().requests, 1_002);
    }
}

mod roll_up {
    use super::*;

    #[test]
    fn moves_old_hours_into_their_days_and_old_days_into_older() {
        let mut h = History::new();
        h.record(NOON, "a", 1, 10, 100); // today
        h.record(NOON - 30 * HOUR, "a", 1, 10, 20); // yesterday 06:00
        h.record(NOON - 40 * DAY, "b", 1, 10, 5); // long ago
        h.roll_up(NOON);
        assert_eq!(h.hours.keys().copied().collect::<Vec<_>>(), vec![NOON]);
        assert_eq!(
            h.days.keys().copied().collect::<Vec<_>>(),
            vec![MIDNIGHT - DAY]
        );
        assert_eq!(h.older(), vec![("b".to_string(), tally(1, 10, 5))]);

        let days = h.days(NOON);
        assert_eq!(days.len(), 30);
        assert_eq!(
            days[29],
            (MIDNIGHT, vec![("a".to_string(), tally(1, 10, 100))])
        );
        assert_eq!(
            days[28],
            (MIDNIGHT - DAY, vec![("a".to_string(), tally(1, 10, 20))])
        );
        assert_eq!(days[0].0, MIDNIGHT - 29 * DAY);
        assert_eq!(h.per_site(NOON), vec![("a".to_string(), tally(2, 20, 120))]);
        assert_eq!(h.total(), tally(3, 30, 125));
    }

    #[test]
    fn keeps_the_current_hour_and_the_23_before() {
        let mut h = History::new();
        h.record(NOON - 23 * HOUR, "a", 1, 1, 1);
        h.record(NOON - 24 * HOUR, "a", 1, 1, 1);
        h.roll_up(NOON + 59);
        assert_eq!(
            h.hours.keys().copied().collect::<Vec<_>>(),
            vec![NOON - 23 * HOUR]
        );
        assert_eq!(h.days.len(), 1);
        let hours = h.hours(NOON);
        assert_eq!(hours[0].0, NOON - 23 * HOUR);
        assert_eq!(hours[23].0, NOON);
    }

    #[test]
    fn days_include_hours_not_rolled_yet() {
        let mut h = History::new();
        h.record(MIDNIGHT - HOUR, "a", 1, 1, 4); // yesterday 23:00, still an hour
        h.record(MIDNIGHT - 23 * HOUR, "a", 1, 1, 6); // yesterday 01:00
        h.roll_up(MIDNIGHT + HOUR);
        assert_eq!(h.days.len(), 1, "01:00 rolled, 23:00 not");
        assert_eq!(
            h.days(MIDNIGHT + HOUR)[28].1,
            vec![("a".to_string(), tally(2, 2, 10))]
        );
    }
}

mod spent_since {
    use super::*;

    #[test]
    fn counts_hours_and_days_starting_at_or_after() {
        let mut h = History::new();
        h.record(MIDNIGHT + 5, "a", 1, 1, 10);
        h.record(NOON, "b", 1, 1, 20);
        h.record(MIDNIGHT - 1, "a", 1, 1, 1_000); // yesterday
        h.record(MIDNIGHT - 3 * DAY, "a", 1, 1, 500);
        h.roll_up(NOON);
        assert_eq!(h.spent_since(MIDNIGHT), 30);
        assert_eq!(h.spent_since(NOON), 20);
        assert_eq!(h.spent_since(MIDNIGHT - DAY), 1_030);
        assert_eq!(h.spent_since(0), 1_530);
    }

    #[test]
    fn refunds_count_negative() {
        let mut h = History::new();
        h.record(NOON, "a", 1, 1, 10);
        h.record(NOON, "a", 0, 0, -4);
        assert_eq!(h.spent_since(MIDNIGHT), 6);
    }
}

mod codec {
    use super::*;

    #[test]
    fn round_trips() {
        let mut h = History::new();
        h.record(NOON, "a.example", 3, 300, 30);
        h.record(NOON - 2 * DAY, "odd name%-", 1, 1, -5);
        h.record(NOON - 40 * DAY, "", 1, 2, 3);
        h.record(NOON - 41 * DAY, "-", 1, 2, 3);
        h.roll_up(NOON);
        let text = h.encode();
        assert!(text.starts_with("padnet-history 1\n"), "{text}");
        assert!(
            text.contains(&format!("h {NOON} a.example 3 300 30\n")),
            "{text}"
        );
        assert!(text.contains("odd%20name%25-"), "{text}");
        assert_eq!(History::decode(&text).map_err(|e| e.to_string()), Ok(h));
        assert_eq!(
            History::decode("padnet-history 1\n").map_err(|e| e.to_string()),
            Ok(History::new())
        );
    }

    #[test]
    fn errors_name_the_line_and_field() {
        let cases = [
            ("", 1, "version"),
            ("padnet-history 2\n", 1, "version"),
            ("padnet-history 1\nh 0 a 1 1\n", 2, "line"),
            ("padnet-history 1\n\nx 0 a 1 1 1\n", 3, "kind"),
            ("padnet-history 1\nh 5 a 1 1 1\n", 2, "start"),
            ("padnet-history 1\nd 3600 a 1 1 1\n", 2, "start"),
            ("padnet-history 1\no 0 a 1 1 1\n", 2, "start"),
            ("padnet-history 1\nh 0 a -1 1 1\n", 2, "requests"),
            ("padnet-history 1\nh 0 a 1 x 1\n", 2, "bytes"),
            ("padnet-history 1\nh 0 a 1 1 1.5\n", 2, "spent"),
            ("padnet-history 1\nh 0 a%2 1 1 1\n", 2, "site"),
            ("padnet-history 1\nh 0 %FF 1 1 1\n", 2, "site"),
            ("padnet-history 1\nh 0 a 1 1 1\nh 0 a 1 1 1\n", 3, "site"),
        ];
        for (text, want_line, want_field) in cases {
            match History::decode(text) {
                Err(HistoryError::Parse {
                    line,
                    field,
                    reason,
                }) => {
                    assert_eq!((line, field), (want_line, want_field), "{text:?}: {reason}");
                }
                other => panic!("{text:?}: expected a parse error, got {other:?}"),
            }
        }
    }

    #[test]
    fn oversized_buckets_are_merged_down() {
        let mut text = String::from("padnet-history 1\n");
        for i in 0..40 {
            text.push_str(&format!("h 0 s{i} 1 1 {i}\n"));
        }
        let h = History::decode(&text).expect("decodes");
        assert_eq!(h.hours[&0].len(), MAX_SITES);
        assert_eq!(h.total(), tally(40, 40, (0..40).sum()));
    }

    #[test]
    fn site_escapes_round_trip() {
        for site in ["", "-", "a b", "%", "x\ny", "é.example", "<script>&\"x"] {
            let field = escape_site(site);
            assert!(!field.contains(' ') && !field.contains('\n') && !field.is_empty());
            assert_eq!(unescape_site(&field).as_deref(), Ok(site));
        }
    }
}

mod file {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn path_is_beside_the_pad() {
        let path = HistoryFile::path_for(Path::new("/x/demo.pad"));
        assert_eq!(path, PathBuf::from("/x/demo.pad.history"));
    }

    #[test]
    fn saves_0600_and_reopens_equal() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = HistoryFile::path_for(&dir.path().join("demo.pad"));
        let file = HistoryFile::open(&path).expect("missing file is empty");
        assert!(file.snapshot().is_empty());
        assert!(!file.save_if_dirty().expect("nothing to save"));
        assert!(!path.exists());

        file.record(NOON, "a.example", 1, 100, 25);
        file.record(NOON + 1, "b.example", 2, 200, 50);
        assert!(file.save_if_dirty().expect("saved"));
        assert!(!file.save_if_dirty().expect("clean"));
        let mode = fs::metadata(&path)
            .expect("saved file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(!dir.path().join("demo.pad.history.tmp").exists());

        let again = HistoryFile::open(&path).expect("reopens");
        assert_eq!(again.snapshot(), file.snapshot());
        assert_eq!(again.with(|h| h.spent_since(MIDNIGHT)), 75);
    }

    #[test]
    fn a_stale_temp_file_is_replaced() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("p.history");
        fs::write(dir.path().join("p.history.tmp"), "junk").expect("stale");
        let file = HistoryFile::open(&path).expect("opens");
        file.record(NOON, "a", 1, 1, 1);
        file.save().expect("saves");
        assert_eq!(
            HistoryFile::open(&path).expect("reopens").snapshot(),
            file.snapshot()
        );
    }

    #[test]
    fn a_corrupt_file_is_an_error_naming_file_and_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("p.history");
        fs::write(&path, "padnet-history 1\nh 0 a 1 1 1\nh 0 b one 1 1\n").expect("written");
        let err = HistoryFile::open(&path).expect_err("corrupt");
        let text = err.to_string();
        assert!(
            text.contains(&format!("{}:3: requests:", path.display())),
            "{text}"
        );
        assert!(path.exists(), "left for the caller to decide");
    }

    #[test]
    fn forget_empties_and_removes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("p.history");
        let file = HistoryFile::open(&path).expect("opens");
        file.record(NOON, "a", 1, 1, 1);
        file.save().expect("saves");
        file.forget().expect("forgets");
        assert!(!path.exists());
        assert!(file.snapshot().is_empty());
        assert!(!file.save_if_dirty().expect("nothing to save"));
        file.forget().expect("forgetting twice is fine");
    }
}

/// A random record: hours before the base time, site, requests, bytes, spent.
fn records() -> impl Strategy<Value = Vec<(i64, u8, u64, u64, i64)>> {
    prop::collection::vec(
        (
            0i64..24 * 40,
            0u8..24,
            0u64..5,
            0u64..100_000,
            -1_000i64..100_000,
        ),
        0..120,
    )
}

proptest! {
    /// Records and roll-ups at a moving "now" lose nothing: hours + days +
    /// older add up to what was recorded, every bucket stays bounded, and the
    /// text format round-trips.
    #[test]
    fn roll_ups_conserve_totals(records in records(), steps in prop::collection::vec(0i64..50, 1..8)) {
        let start = NOON - 40 * DAY;
        let mut h = History::new();
        let mut want = Tally::default();
        let mut now = start;
        let chunk = records.len() / steps.len() + 1;
        for (batch, step) in records.chunks(chunk).zip(&steps) {
            for &(hours, site, requests, bytes, spent) in batch {
                let at = now - hours * HOUR + (spent.rem_euclid(HOUR));
                h.record(at, &format!("site{site}.example"), requests, bytes, spent);
                want.add(tally(requests, bytes, spent));
            }
            now += step * HOUR;
            h.roll_up(now);
            prop_assert_eq!(h.total(), want);
            for bucket in h.hours.values().chain(h.days.values()).chain([&h.older]) {
                prop_assert!(bucket.len() <= MAX_SITES);
            }
            prop_assert!(h.hours.len() <= HOURS as usize);
            prop_assert!(h.days.len() <= DAYS as usize);
            let shown: i64 = h.days(now).iter().flat_map(|(_, s)| s).map(|(_, t)| t.spent).sum();
            let older: i64 = h.older().iter().map(|(_, t)| t.spent).sum();
            prop_assert_eq!(shown + older, want.spent, "days(now) + older is everything");
        }
        let decoded = History::decode(&h.encode());
        prop_assert_eq!(decoded.map_err(|e| e.to_string()), Ok(h));
    }
}
