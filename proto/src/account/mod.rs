//! The account service's requests, as the agent sends them through its
//! tunnel to the gateway: a reserved authority no site can have, one path per
//! operation, JSON bodies checked field by field. Pure: no I/O.
//!
//! The tunnel authenticates the pad in use, so no request names it; the
//! serial of another pad (to cancel, or the one handed over) travels only
//! inside the tunnel.

use std::fmt;

use serde_json::{Map, Value};
use tunnel::handshake::HELLO_LEN;
use tunnel::pad::Serial;
use zeroize::Zeroizing;

/// The authority of the gateway's own account service. `.invalid` never
/// resolves (RFC 6761), so no site can be reached by this name; the agent
/// refuses it from browsers and the gateway answers it itself.
pub const AUTHORITY: &str = "account.padnet.invalid";

/// The longest request body either side accepts.
pub const MAX_BODY: usize = 4096;

/// Shortest and longest PIN, in digits.
pub const PIN_MIN: usize = 6;
pub const PIN_MAX: usize = 20;

/// Hellos a receive request may carry, one per candidate ticket slot.
pub const MAX_PROOFS: usize = 4;

/// Digits in an account number (printed in groups of four).
pub const ACCOUNT_DIGITS: usize = 16;

/// One account operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Open,
    Register,
    Show,
    Cancel,
    Topup,
    Withdraw,
    Receive,
}

impl Operation {
    pub const ALL: [Operation; 7] = [
        Operation::Open,
        Operation::Register,
        Operation::Show,
        Operation::Cancel,
        Operation::Topup,
        Operation::Withdraw,
        Operation::Receive,
    ];

    /// Its name, as in the paths.
    pub fn name(self) -> &'static str {
        match self {
            Operation::Open => "open",
            Operation::Register => "register",
            Operation::Show => "show",
            Operation::Cancel => "cancel",
            Operation::Topup => "topup",
            Operation::Withdraw => "withdraw",
            Operation::Receive => "receive",
        }
    }

    /// Its path at the gateway's account service.
    pub fn path(self) -> String {
        format!("/v1/{}", self.name())
    }

    /// The operation a gateway path names.
    pub fn from_path(path: &str) -> Option<Operation> {
        let name = path.strip_prefix("/v1/")?;
        Operation::ALL.into_iter().find(|o| o.name() == name)
    }

    /// Whether it changes anything (every one but `show`).
    pub fn changes(self) -> bool {
        self != Operation::Show
    }
}

/// What was wrong with a request, naming the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub why: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.why)
    }
}

impl std::error::Error for FieldError {}

fn bad(field: &str, why: impl Into<String>) -> FieldError {
    FieldError {
        field: field.into(),
        why: why.into(),
    }
}

/// An account number, canonical: 16 digits in groups of four joined by `-`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AccountNumber(String);

impl AccountNumber {
    /// Parse what a person typed: 16 digits, spaces and dashes ignored.
    pub fn parse(raw: &str) -> Result<AccountNumber, FieldError> {
        let digits: String = raw.chars().filter(|c| *c != '-' && *c != ' ').collect();
        if digits.len() != ACCOUNT_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad(
                "account",
                format!(
                    "{raw:?} is not an account number: expected {ACCOUNT_DIGITS} digits, as in 1234-5678-9012-3456"
                ),
            ));
        }
        Ok(AccountNumber::from_digits(&digits))
    }

    /// A fresh random account number.
    pub fn random() -> AccountNumber {
        use rand::Rng;
        let mut rng = rand::rngs::OsRng;
        let digits: String = (0..ACCOUNT_DIGITS)
            .map(|_| char::from(b'0' + rng.gen_range(0..10u8)))
            .collect();
        AccountNumber::from_digits(&digits)
    }

    fn from_digits(digits: &str) -> AccountNumber {
        let groups: Vec<&str> = (0..ACCOUNT_DIGITS / 4)
            .map(|i| &digits[i * 4..i * 4 + 4])
            .collect();
        AccountNumber(groups.join("-"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AccountNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A PIN: digits only, wiped from memory when dropped.
#[derive(Clone)]
pub struct Pin(Zeroizing<String>);

impl fmt::Debug for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pin(..)")
    }
}

impl Pin {
    pub fn parse(raw: &str) -> Result<Pin, FieldError> {
        if !raw.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("pin", "a PIN is digits only"));
        }
        if raw.len() < PIN_MIN || raw.len() > PIN_MAX {
            return Err(bad(
                "pin",
                format!(
                    "a PIN has {PIN_MIN} to {PIN_MAX} digits; this one has {}",
                    raw.len()
                ),
            ));
        }
        Ok(Pin(Zeroizing::new(raw.to_string())))
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A request to the account service, checked.
#[derive(Debug, Clone)]
pub enum AccountRequest {
    /// Open an account with `pin`; the pad in use is registered to it.
    Open {
        pin: Pin,
    },
    /// Register the pad in use to `account`.
    Register {
        account: AccountNumber,
        pin: Pin,
    },
    Show {
        account: AccountNumber,
        pin: Pin,
    },
    /// Cancel `serial` (registered to `account`) into the account.
    Cancel {
        account: AccountNumber,
        pin: Pin,
        serial: Serial,
    },
    /// From the account to the pad in use.
    Topup {
        account: AccountNumber,
        pin: Pin,
        amount: i64,
    },
    /// From the pad in use to the account.
    Withdraw {
        account: AccountNumber,
        pin: Pin,
        amount: i64,
    },
    /// Move the whole value of pad `serial`, handed over, into the pad in
    /// use. `proofs` are hellos sealed with that pad's first unused ticket
    /// slots, in slot order (the file's holder may have used a slot the
    /// file still shows): the gateway claims the first it knows.
    Receive {
        serial: Serial,
        proofs: Vec<[u8; HELLO_LEN]>,
    },
}

/// The fields each operation takes.
fn fields(op: Operation) -> &'static [&'static str] {
    match op {
        Operation::Open => &["pin"],
        Operation::Register | Operation::Show => &["account", "pin"],
        Operation::Cancel => &["account", "pin", "serial"],
        Operation::Topup | Operation::Withdraw => &["account", "pin", "amount"],
        Operation::Receive => &["serial", "proof"],
    }
}

/// Parse an amount: positive, at most 6 decimals.
pub fn parse_positive_amount(raw: &str) -> Result<i64, FieldError> {
    let micros = policy::units::parse_amount(raw).map_err(|e| bad("amount", e))?;
    if micros <= 0 {
        return Err(bad(
            "amount",
            format!("{raw:?}: the amount must be more than zero"),
        ));
    }
    Ok(micros)
}

/// Parse a pad serial.
pub fn parse_serial(raw: &str) -> Result<Serial, FieldError> {
    raw.trim()
        .parse::<Serial>()
        .map_err(|e| bad("serial", format!("{raw:?} is not a pad serial: {e}")))
}

impl AccountRequest {
    /// Parse `op`'s JSON body: an object with exactly the operation's
    /// fields, each a string.
    pub fn parse(op: Operation, body: &[u8]) -> Result<AccountRequest, FieldError> {
        if body.len() > MAX_BODY {
            return Err(bad(
                "body",
                format!("{} bytes; at most {MAX_BODY}", body.len()),
            ));
        }
        let value: Value =
            serde_json::from_slice(body).map_err(|e| bad("body", format!("not JSON: {e}")))?;
        let Value::Object(obj) = value else {
            return Err(bad("body", "expected a JSON object"));
        };
        let wanted = fields(op);
        if let Some(extra) = obj.keys().find(|k| !wanted.contains(&k.as_str())) {
            return Err(bad(
                extra,
                format!(
                    "unknown field for {}; it takes {}",
                    op.name(),
                    wanted.join(", ")
                ),
            ));
        }
        let get = |name: &str| -> Result<&str, FieldError> { string(&obj, name) };
        let account = || AccountNumber::parse(get("account")?);
        let pin = || Pin::parse(get("pin")?);
        Ok(match op {
            Operation::Open => AccountRequest::Open { pin: pin()? },
            Operation::Register => AccountRequest::Register {
                account: account()?,
                pin: pin()?,
            },
            Operation::Show => AccountRequest::Show {
                account: account()?,
                pin: pin()?,
            },
            Operation::Cancel => AccountRequest::Cancel {
                account: account()?,
                pin: pin()?,
                serial: parse_serial(get("serial")?)?,
            },
            Operation::Topup => AccountRequest::Topup {
                account: account()?,
                pin: pin()?,
                amount: parse_positive_amount(get("amount")?)?,
            },
            Operation::Withdraw => AccountRequest::Withdraw {
                account: account()?,
                pin: pin()?,
                amount: parse_positive_amount(get("amount")?)?,
            },
            Operation::Receive => {
                let serial = parse_serial(get("serial")?)?;
                let raw = get("proof")?;
                let bytes = Zeroizing::new(
                    hex::decode(raw).map_err(|e| bad("proof", format!("not hex: {e}")))?,
                );
                if bytes.is_empty()
                    || bytes.len() % HELLO_LEN != 0
                    || bytes.len() / HELLO_LEN > MAX_PROOFS
                {
                    return Err(bad(
                        "proof",
                        format!(
                            "{} bytes; a proof is 1 to {MAX_PROOFS} hellos of {HELLO_LEN} bytes",
                            bytes.len()
                        ),
                    ));
                }
                let proofs = bytes
                    .chunks_exact(HELLO_LEN)
                    .map(|c| {
                        let mut h = [0u8; HELLO_LEN];
                        h.copy_from_slice(c);
                        h
                    })
                    .collect();
                AccountRequest::Receive { serial, proofs }
            }
        })
    }

    pub fn operation(&self) -> Operation {
        match self {
            AccountRequest::Open { .. } => Operation::Open,
            AccountRequest::Register { .. } => Operation::Register,
            AccountRequest::Show { .. } => Operation::Show,
            AccountRequest::Cancel { .. } => Operation::Cancel,
            AccountRequest::Topup { .. } => Operation::Topup,
            AccountRequest::Withdraw { .. } => Operation::Withdraw,
            AccountRequest::Receive { .. } => Operation::Receive,
        }
    }

    /// The account and PIN it must be checked against (`None` for open and
    /// receive, which the tunnel alone authorises).
    pub fn credentials(&self) -> Option<(&AccountNumber, &Pin)> {
        match self {
            AccountRequest::Open { .. } | AccountRequest::Receive { .. } => None,
            AccountRequest::Register { account, pin }
            | AccountRequest::Show { account, pin }
            | AccountRequest::Cancel { account, pin, .. }
            | AccountRequest::Topup { account, pin, .. }
            | AccountRequest::Withdraw { account, pin, .. } => Some((account, pin)),
        }
    }

    /// The JSON body that [`AccountRequest::parse`] reads back.
    pub fn to_body(&self) -> Zeroizing<Vec<u8>> {
        let mut m = Map::new();
        let mut put = |k: &str, v: String| {
            m.insert(k.to_string(), Value::String(v));
        };
        if let Some((account, pin)) = self.credentials() {
            put("account", account.to_string());
            put("pin", pin.as_str().to_string());
        }
        match self {
            AccountRequest::Open { pin } => put("pin", pin.as_str().to_string()),
            AccountRequest::Cancel { serial, .. } => put("serial", serial.to_string()),
            AccountRequest::Topup { amount, .. } | AccountRequest::Withdraw { amount, .. } => {
                put("amount", policy::units::format_amount(*amount))
            }
            AccountRequest::Receive { serial, proofs } => {
                put("serial", serial.to_string());
                put("proof", hex::encode(proofs.concat()));
            }
            _ => {}
        }
        Zeroizing::new(serde_json::to_vec(&Value::Object(m)).unwrap_or_default())
    }
}

fn string<'a>(obj: &'a Map<String, Value>, name: &str) -> Result<&'a str, FieldError> {
    match obj.get(name) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(bad(name, "expected a string")),
        None => Err(bad(name, "missing")),
    }
}

#[cfg(test)]
mod tests;
