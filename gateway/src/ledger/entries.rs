//! The ledger's key-value layout, shared by every store: prefixed keys (`a/`
//! accounts, `h/` holds, `d/` day counters, `m/` totals, `o/` owners, `s/`
//! sites, `t/` owner statements, `p/` blank and cancelled pads' status, `r/`
//! retailers, `u/` users' accounts, `y/` policy sources by id, `n/` the
//! current policy id per name).
//! Balances and aggregate counters only: nothing that names a pad names a
//! host or a retailer, and nothing names an address.

use super::book::{
    Account, Book, Changes, DayUsage, Hold, LedgerError, Owner, PadState, Retailer, Site,
    Statement, UserAccount,
};

/// One store change: the key, and its new value (`None`: remove it).
pub type Entry = (Vec<u8>, Option<Vec<u8>>);

pub(super) fn store_err(e: impl std::fmt::Display) -> LedgerError {
    LedgerError::Store(e.to_string())
}

fn hold_key(id: u64) -> Vec<u8> {
    let mut k = b"h/".to_vec();
    k.extend_from_slice(&id.to_be_bytes());
    k
}

/// `t/OWNER/SITE/DAY` (owner ids are hex and site names host names: neither holds a `/`).
fn statement_key((owner, site, day): &super::book::StatementKey) -> Vec<u8> {
    format!("t/{owner}/{site}/{day}").into_bytes()
}

fn i64_of(v: &[u8], what: &str) -> Result<i64, LedgerError> {
    Ok(i64::from_be_bytes(v.try_into().map_err(|_| {
        LedgerError::Store(format!("corrupt entry {what}: {} bytes", v.len()))
    })?))
}

/// The entries `changes` names, as they are now in `book`.
pub fn encode(book: &Book, changes: &Changes) -> Result<Vec<Entry>, LedgerError> {
    let mut out = Vec::new();
    for a in &changes.accounts {
        let k = format!("a/{}", a.key()).into_bytes();
        out.push((k, book.balances.get(a).map(|v| v.to_be_bytes().to_vec())));
    }
    for id in &changes.holds {
        let v = match book.holds.get(id) {
            Some(h) => Some(serde_json::to_vec(h).map_err(store_err)?),
            None => None,
        };
        out.push((hold_key(*id), v));
    }
    for pad in &changes.days {
        if let Some(d) = book.days.get(pad) {
            let v = serde_json::to_vec(d).map_err(store_err)?;
            out.push((format!("d/{pad}").into_bytes(), Some(v)));
        }
    }
    for id in &changes.owners {
        let v = match book.owners.get(id) {
            Some(o) => Some(serde_json::to_vec(o).map_err(store_err)?),
            None => None,
        };
        out.push((format!("o/{id}").into_bytes(), v));
    }
    for name in &changes.sites {
        let v = match book.sites.get(name) {
            Some(site) => Some(serde_json::to_vec(site).map_err(store_err)?),
            None => None,
        };
        out.push((format!("s/{name}").into_bytes(), v));
    }
    for key in &changes.statements {
        let v = match book.statements.get(key) {
            Some(st) => Some(serde_json::to_vec(st).map_err(store_err)?),
            None => None,
        };
        out.push((statement_key(key), v));
    }
    for pad in &changes.pad_states {
        let v = match book.pad_states.get(pad) {
            Some(st) => Some(serde_json::to_vec(st).map_err(store_err)?),
            None => None,
        };
        out.push((format!("p/{pad}").into_bytes(), v));
    }
    for name in &changes.retailers {
        let v = match book.retailers.get(name) {
            Some(r) => Some(serde_json::to_vec(r).map_err(store_err)?),
            None => None,
        };
        out.push((format!("r/{name}").into_bytes(), v));
    }
    for id in &changes.user_accounts {
        let v = match book.accounts.get(id) {
            Some(a) => Some(serde_json::to_vec(a).map_err(store_err)?),
            None => None,
        };
        out.push((format!("u/{id}").into_bytes(), v));
    }
    for id in &changes.policies {
        let v = book.policies.get(id).map(|s| s.as_bytes().to_vec());
        out.push((format!("y/{id}").into_bytes(), v));
    }
    for name in &changes.policy_names {
        let v = book.policy_current.get(name).map(|s| s.as_bytes().to_vec());
        out.push((format!("n/{name}").into_bytes(), v));
    }
    if changes.totals {
        out.push((
            b"m/issued".to_vec(),
            Some(book.issued.to_be_bytes().to_vec()),
        ));
        out.push((
            b"m/redeemed".to_vec(),
            Some(book.redeemed.to_be_bytes().to_vec()),
        ));
        let next = (book.next_hold as i64).to_be_bytes().to_vec();
        out.push((b"m/next_hold".to_vec(), Some(next)));
    }
    Ok(out)
}

/// Every entry of `book` (to copy a whole book into a new store).
pub fn encode_all(book: &Book) -> Result<Vec<Entry>, LedgerError> {
    let changes = Changes {
        accounts: book.balances.keys().cloned().collect(),
        holds: book.holds.keys().copied().collect(),
        days: book.days.keys().cloned().collect(),
        totals: true,
        owners: book.owners.keys().cloned().collect(),
        sites: book.sites.keys().cloned().collect(),
        statements: book.statements.keys().cloned().collect(),
        pad_states: book.pad_states.keys().cloned().collect(),
        retailers: book.retailers.keys().cloned().collect(),
        user_accounts: book.accounts.keys().cloned().collect(),
        policies: book.policies.keys().cloned().collect(),
        policy_names: book.policy_current.keys().cloned().collect(),
    };
    encode(book, &changes)
}

/// Rebuild a book from a store's entries.
pub fn decode(
    entries: impl Iterator<Item = Result<(Vec<u8>, Vec<u8>), LedgerError>>,
) -> Result<Book, LedgerError> {
    let mut book = Book::default();
    for kv in entries {
        let (k, v) = kv?;
        apply_entry(&mut book, &k, Some(&v))?;
    }
    // Never reuse a hold id, even one whose hold is closed.
    let after_open = book.holds.keys().next_back().map_or(0, |m| m + 1);
    book.next_hold = book.next_hold.max(after_open);
    Ok(book)
}

/// Set one entry of `book` as a store holds it: `None` removes it (a shared
/// store's tombstone). Unknown prefixes are left alone (a newer writer's).
pub fn apply_entry(book: &mut Book, k: &[u8], v: Option<&[u8]>) -> Result<(), LedgerError> {
    let key = String::from_utf8_lossy(k).into_owned();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    fn put<K: Ord, T: serde::de::DeserializeOwned>(
        map: &mut std::collections::BTreeMap<K, T>,
        key: K,
        v: Option<&[u8]>,
    ) -> Result<(), LedgerError> {
        match v {
            Some(v) => {
                map.insert(key, serde_json::from_slice(v).map_err(store_err)?);
            }
            None => {
                map.remove(&key);
            }
        }
        Ok(())
    }
    if let Some(a) = k.strip_prefix(b"a/") {
        let name = std::str::from_utf8(a).map_err(store_err)?;
        let acct = Account::from_key(name)
            .ok_or_else(|| LedgerError::Store(format!("unknown account {name:?}")))?;
        match v {
            Some(v) => book.balances.insert(acct, i64_of(v, &key)?),
            None => book.balances.remove(&acct),
        };
    } else if let Some(h) = k.strip_prefix(b"h/") {
        let id = u64::from_be_bytes(
            h.try_into()
                .map_err(|_| LedgerError::Store("corrupt hold key".into()))?,
        );
        put::<u64, Hold>(&mut book.holds, id, v)?;
    } else if let Some(d) = k.strip_prefix(b"d/") {
        put::<String, DayUsage>(&mut book.days, text(d), v)?;
    } else if let Some(o) = k.strip_prefix(b"o/") {
        put::<String, Owner>(&mut book.owners, text(o), v)?;
    } else if let Some(n) = k.strip_prefix(b"s/") {
        put::<String, Site>(&mut book.sites, text(n), v)?;
    } else if let Some(t) = k.strip_prefix(b"t/") {
        let t = text(t);
        let mut parts = t.splitn(3, '/');
        let (Some(owner), Some(site), Some(day)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(LedgerError::Store(format!("corrupt statement key {key:?}")));
        };
        let day: i64 = day
            .parse()
            .map_err(|_| LedgerError::Store(format!("corrupt statement key {key:?}")))?;
        let id = (owner.to_string(), site.to_string(), day);
        put::<_, Statement>(&mut book.statements, id, v)?;
    } else if let Some(p) = k.strip_prefix(b"p/") {
        put::<String, PadState>(&mut book.pad_states, text(p), v)?;
    } else if let Some(r) = k.strip_prefix(b"r/") {
        put::<String, Retailer>(&mut book.retailers, text(r), v)?;
    } else if let Some(u) = k.strip_prefix(b"u/") {
        put::<String, UserAccount>(&mut book.accounts, text(u), v)?;
    } else if let Some(id) = k.strip_prefix(b"y/") {
        match v {
            Some(v) => book.policies.insert(text(id), text(v)),
            None => book.policies.remove(&text(id)),
        };
    } else if let Some(name) = k.strip_prefix(b"n/") {
        match v {
            Some(v) => book.policy_current.insert(text(name), text(v)),
            None => book.policy_current.remove(&text(name)),
        };
    } else if let Some(v) = v {
        match k {
            b"m/issued" => book.issued = i64_of(v, &key)?,
            b"m/redeemed" => book.redeemed = i64_of(v, &key)?,
            b"m/next_hold" => book.next_hold = i64_of(v, &key)? as u64,
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every kind of record survives the store's layout unchanged.
    #[test]
    fn a_whole_book_decodes_to_itself() {
        let mut b = Book::default();
        b.issue("pad-a", 5_000_000).unwrap();
        b.mint_inactive("pad-b", 20_000_000).unwrap();
        b.add_retailer(
            "corner",
            Retailer {
                token_hash: "h".into(),
                created: 20_000,
                count: 0,
                sum: 0,
            },
        )
        .unwrap();
        b.mint_inactive("pad-c", 1_000_000).unwrap();
        b.activate("pad-c", None, Some("corner")).unwrap();
        b.add_owner(
            "00ff",
            Owner {
                secret_hash: "s".into(),
                created: 20_000,
            },
        )
        .unwrap();
        b.issue("pad-d", 7).unwrap();
        b.open_account("12345678", "pin".into(), 20_000, "pad-d")
            .unwrap();
        b.cancel_pad("pad-d", &Account::User("12345678".into()))
            .unwrap();
        b.pin_checked("12345678", false, 99).unwrap();
        b.reserve("pad-a", 10, 100).unwrap();
        b.put_policy(&"ab".repeat(32), "staff/a", "name = \"staff/a\"\n", false)
            .unwrap();
        let entries = encode_all(&b).unwrap();
        let decoded = decode(
            entries
                .into_iter()
                .filter_map(|(k, v)| v.map(|v| Ok((k, v)))),
        )
        .unwrap();
        assert_eq!(decoded, b);
    }

    /// A peer's writes, replayed entry by entry (removals as tombstones),
    /// bring a stale copy of the book to the writer's book exactly.
    #[test]
    fn entries_replayed_over_a_stale_book_catch_it_up() {
        let mut writer = Book::default();
        writer.issue("pad-a", 5_000_000).unwrap();
        writer.issue("pad-b", 1_000_000).unwrap();
        let mut stale = decode(
            encode_all(&writer)
                .unwrap()
                .into_iter()
                .filter_map(|(k, v)| v.map(|v| Ok((k, v)))),
        )
        .unwrap();
        let (hold, _, c1) = writer.reserve("pad-a", 10, 2_000_000).unwrap();
        let mut seen = Vec::new();
        seen.extend(encode(&writer, &c1).unwrap());
        let c2 = writer.settle(hold, 1_500, 3_000, 20_000).unwrap();
        seen.extend(encode(&writer, &c2).unwrap());
        let (_, _, c3) = writer.reserve("pad-b", 1, 500).unwrap();
        seen.extend(encode(&writer, &c3).unwrap());
        assert!(
            seen.iter().any(|(_, v)| v.is_none()),
            "the settled hold's removal is among the entries"
        );
        for (k, v) in &seen {
            apply_entry(&mut stale, k, v.as_deref()).unwrap();
        }
        assert_eq!(stale, writer);
        assert!(stale.audit().problems.is_empty());
    }
}
