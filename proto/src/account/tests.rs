//! The account requests' parser: fields named, bounds, round trips.

use super::*;
use proptest::prelude::*;

const ACCT: &str = "1234-5678-9012-3456";

fn parse(op: Operation, body: &str) -> Result<AccountRequest, FieldError> {
    AccountRequest::parse(op, body.as_bytes())
}

fn field(r: Result<AccountRequest, FieldError>) -> String {
    r.err().map(|e| e.field).unwrap_or_default()
}

#[test]
fn paths_name_each_operation_once() {
    for op in Operation::ALL {
        assert_eq!(Operation::from_path(&op.path()), Some(op));
    }
    for bad in ["/v1/", "/v1/opens", "/open", "/v1/open/", ""] {
        assert_eq!(Operation::from_path(bad), None, "{bad}");
    }
}

#[test]
fn account_numbers_are_sixteen_digits_however_typed() {
    for ok in [ACCT, "1234567890123456", " 1234 5678 9012 3456 "] {
        assert_eq!(AccountNumber::parse(ok).unwrap().as_str(), ACCT, "{ok}");
    }
    for bad in [
        "",
        "1234-5678-9012-345",
        "1234-5678-9012-34567",
        "abcd-5678-9012-3456",
        "１２３４567890123456",
    ] {
        assert!(AccountNumber::parse(bad).is_err(), "{bad}");
    }
    let r = AccountNumber::random();
    assert_eq!(AccountNumber::parse(r.as_str()).unwrap(), r);
}

#[test]
fn pins_are_six_to_twenty_digits() {
    assert!(Pin::parse("123456").is_ok());
    assert!(Pin::parse(&"9".repeat(20)).is_ok());
    for bad in ["12345", "", "12345a", "123 456", "-123456", &"9".repeat(21)] {
        let e = Pin::parse(bad).unwrap_err();
        assert_eq!(e.field, "pin", "{bad}");
    }
}

#[test]
fn each_field_is_checked_and_named() {
    let open = parse(Operation::Open, r#"{"pin":"123456"}"#).unwrap();
    assert!(matches!(open, AccountRequest::Open { .. }));
    assert_eq!(field(parse(Operation::Open, r#"{"pin":123456}"#)), "pin");
    assert_eq!(field(parse(Operation::Open, r#"{}"#)), "pin");
    assert_eq!(
        field(parse(Operation::Open, r#"{"pin":"123456","x":"1"}"#)),
        "x"
    );
    assert_eq!(field(parse(Operation::Open, r#"["pin"]"#)), "body");
    assert_eq!(field(parse(Operation::Open, "{")), "body");
    let t = |amount: &str| {
        parse(
            Operation::Topup,
            &format!(r#"{{"account":"{ACCT}","pin":"123456","amount":"{amount}"}}"#),
        )
    };
    match t("1.5").unwrap() {
        AccountRequest::Topup { amount, .. } => assert_eq!(amount, 1_500_000),
        other => panic!("{other:?}"),
    }
    for bad in ["0", "0.000000", "-1", "1.0000001", "abc", "", "1e3"] {
        assert_eq!(field(t(bad)), "amount", "{bad}");
    }
    let c = |serial: &str| {
        parse(
            Operation::Cancel,
            &format!(r#"{{"account":"{ACCT}","pin":"123456","serial":"{serial}"}}"#),
        )
    };
    assert_eq!(field(c("nope")), "serial");
    let serial = Serial::random().to_string();
    assert!(c(&serial).is_ok());
    let r = |proof: &str| {
        parse(
            Operation::Receive,
            &format!(r#"{{"serial":"{serial}","proof":"{proof}"}}"#),
        )
    };
    assert_eq!(field(r("zz")), "proof");
    assert_eq!(field(r("00")), "proof");
    assert_eq!(field(r("")), "proof");
    assert!(r(&"ab".repeat(HELLO_LEN)).is_ok());
    match r(&"ab".repeat(HELLO_LEN * MAX_PROOFS)).unwrap() {
        AccountRequest::Receive { proofs, .. } => assert_eq!(proofs.len(), MAX_PROOFS),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        field(r(&"ab".repeat(HELLO_LEN * (MAX_PROOFS + 1)))),
        "proof"
    );
    assert_eq!(field(r(&"ab".repeat(HELLO_LEN + 1))), "proof");
    let big = format!(r#"{{"pin":"{}"}}"#, "1".repeat(MAX_BODY));
    assert_eq!(field(parse(Operation::Open, &big)), "body");
}

#[test]
fn a_pin_never_shows_in_debug_output() {
    let r = parse(
        Operation::Show,
        &format!(r#"{{"account":"{ACCT}","pin":"987654"}}"#),
    )
    .unwrap();
    assert!(!format!("{r:?}").contains("987654"));
}

fn any_request() -> impl Strategy<Value = AccountRequest> {
    let acct = "[0-9]{16}".prop_map(|d| AccountNumber::parse(&d).unwrap());
    let pin = "[0-9]{6,20}".prop_map(|p| Pin::parse(&p).unwrap());
    let amount = 1i64..i64::MAX;
    prop_oneof![
        pin.clone().prop_map(|pin| AccountRequest::Open { pin }),
        (acct.clone(), pin.clone())
            .prop_map(|(account, pin)| AccountRequest::Show { account, pin }),
        (acct.clone(), pin.clone())
            .prop_map(|(account, pin)| AccountRequest::Register { account, pin }),
        (acct.clone(), pin.clone()).prop_map(|(account, pin)| AccountRequest::Cancel {
            account,
            pin,
            serial: Serial::random()
        }),
        (acct.clone(), pin.clone(), amount.clone()).prop_map(|(account, pin, amount)| {
            AccountRequest::Topup {
                account,
                pin,
                amount,
            }
        }),
        (acct, pin, amount).prop_map(|(account, pin, amount)| AccountRequest::Withdraw {
            account,
            pin,
            amount
        }),
        proptest::collection::vec(proptest::array::uniform32(any::<u8>()), 1..=MAX_PROOFS)
            .prop_map(|v| {
                let proofs = v
                    .iter()
                    .map(|b| {
                        let mut proof = [0u8; HELLO_LEN];
                        proof[..32].copy_from_slice(b);
                        proof
                    })
                    .collect();
                AccountRequest::Receive {
                    serial: Serial::random(),
                    proofs,
                }
            }),
    ]
}

proptest! {
    /// Every request survives its own encoding.
    #[test]
    fn bodies_round_trip(req in any_request()) {
        let body = req.to_body();
        let back = AccountRequest::parse(req.operation(), &body).unwrap();
        prop_assert_eq!(back.to_body(), body);
    }

    /// No input panics the parser.
    #[test]
    fn any_bytes_are_an_answer_not_a_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200), op in 0usize..7) {
        let _ = AccountRequest::parse(Operation::ALL[op], &bytes);
    }
}
