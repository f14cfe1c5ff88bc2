//! Owner ids, owner secrets, retailers' till tokens and verification tokens.
//! A secret is shown once and kept only as its argon2 hash; it names whose
//! it is (`pno_<owner>_<key>`, `prt_<retailer>_<key>`) so a check needs one
//! hash, compared in constant time by argon2.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rand::RngCore;
use zeroize::Zeroizing;

fn random_hex(bytes: usize) -> String {
    let mut raw = Zeroizing::new(vec![0u8; bytes]);
    rand::rngs::OsRng.fill_bytes(&mut raw);
    hex::encode(&*raw)
}

/// A new owner id (16 hex digits; not secret).
pub fn new_owner_id() -> String {
    random_hex(8)
}

/// A new verification token (not secret: it is served publicly).
pub fn new_token() -> String {
    random_hex(16)
}

/// A new secret for `owner`, and its hash to store.
pub fn new_secret(owner: &str) -> Result<(Zeroizing<String>, String), String> {
    let secret = Zeroizing::new(format!("pno_{owner}_{}", random_hex(32)));
    let hash = hash(&secret)?;
    Ok((secret, hash))
}

/// A new till token for retailer `name`, and its hash to store.
pub fn new_retail_token(name: &str) -> Result<(Zeroizing<String>, String), String> {
    let token = Zeroizing::new(format!("prt_{name}_{}", random_hex(32)));
    let hash = hash(&token)?;
    Ok((token, hash))
}

/// The retailer a presented till token claims to be (before it is checked).
pub fn claimed_retailer(token: &str) -> Option<&str> {
    let rest = token.strip_prefix("prt_")?;
    let (name, key) = rest.rsplit_once('_')?;
    let ok =
        is_retailer_name(name) && key.len() == 64 && key.bytes().all(|b| b.is_ascii_hexdigit());
    ok.then_some(name)
}

/// A retailer's name as the operator gives it: 1 to 32 lower-case letters,
/// digits and dashes ("corner-shop").
pub fn is_retailer_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// The argon2id hash (PHC string, fresh salt) to store for `secret`.
pub fn hash(secret: &str) -> Result<String, String> {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    Argon2::default()
        .hash_password(secret.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| format!("hashing a secret: {e}"))
}

/// The owner a presented secret claims to be (before it is checked).
pub fn claimed_owner(secret: &str) -> Option<&str> {
    let rest = secret.strip_prefix("pno_")?;
    let (owner, key) = rest.split_once('_')?;
    let ok = owner.len() == 16
        && key.len() == 64
        && owner
            .bytes()
            .chain(key.bytes())
            .all(|b| b.is_ascii_hexdigit());
    ok.then_some(owner)
}

/// Whether `secret` matches the stored `hash` (argon2 compares in constant time).
pub fn matches(secret: &str, hash: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(h) => Argon2::default()
            .verify_password(secret.as_bytes(), &h)
            .is_ok(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_till_token_names_its_retailer_and_only_it_matches_its_hash() {
        let (token, hash) = new_retail_token("corner-shop").unwrap();
        assert_eq!(claimed_retailer(&token), Some("corner-shop"));
        assert!(matches(&token, &hash));
        let mut other = token.to_string();
        other.pop();
        other.push('0');
        assert!(!matches(&other, &hash) || other == *token);
        assert_eq!(claimed_retailer("prt_Bad_00"), None);
        assert_eq!(claimed_retailer(&token.replace("prt_", "pno_")), None);
    }

    #[test]
    fn a_secret_names_its_owner_and_only_it_matches_its_hash() {
        let owner = new_owner_id();
        let (secret, hash) = new_secret(&owner).unwrap();
        assert_eq!(claimed_owner(&secret), Some(owner.as_str()));
        assert!(!hash.contains(secret.as_str()), "only the hash is kept");
        assert!(matches(&secret, &hash));
        let mut wrong = secret.to_string();
        wrong.pop();
        wrong.push(if secret.ends_with('0') { '1' } else { '0' });
        assert!(!matches(&wrong, &hash));
        assert!(!matches(&secret, "not a hash"));
        assert_eq!(claimed_owner("pno_short_key"), None);
        assert_eq!(claimed_owner("Bearer x"), None);
    }
}
