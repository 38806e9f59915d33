//! openapi.yaml's request schemas say exactly what the components accept, so a client that
//! follows the document is never refused for the shape of a value, and a value the document
//! refuses is refused by the server too. The static tests hold the document to the parsers
//! compiled into the components (`wasmpay-common`); the live one sends the boundary values
//! of the other documented shapes and compares each answer with the document's verdict.
//! The fuzz run (`fuzz.rs`) probes the same promise with generated requests.

use serde_json::{Value, json};
use wasmpay_common::{currency::Currency, money::parse_amount};

use crate::{
    app::TestApp,
    money::{deposit, funded_wallet, key, wallet},
    openapi::OpenApi,
    users::verified,
};

const CURRENCY_CODE: &str = "/components/schemas/CurrencyCode";
const POSITIVE_AMOUNT: &str = "/components/schemas/PositiveAmount";

/// Every three-letter upper-case code `Currency::parse` accepts, in order.
fn accepted_currency_codes() -> Vec<String> {
    let letters = || b'A'..=b'Z';
    letters()
        .flat_map(|a| letters().flat_map(move |b| letters().map(move |c| String::from_utf8(vec![a, b, c]).unwrap())))
        .filter(|code| Currency::parse(code).is_ok())
        .collect()
}

/// The enum as it belongs in openapi.yaml: a flow sequence wrapped at 120 columns.
fn yaml_enum(codes: &[String]) -> String {
    let mut lines = vec![String::from("      enum: [")];
    for (i, code) in codes.iter().enumerate() {
        let item = if i + 1 == codes.len() { format!("{code}]") } else { format!("{code},") };
        let line = lines.last_mut().expect("a line");
        if line.len() + 1 + item.len() > 120 {
            lines.push(format!("        {item}"));
        } else {
            if !line.ends_with('[') {
                line.push(' ');
            }
            line.push_str(&item);
        }
    }
    lines.join("\n")
}

#[test]
fn the_currency_enum_lists_every_code_the_server_accepts() {
    let accepted = accepted_currency_codes();
    assert!(accepted.len() > 150 && accepted.contains(&"USD".to_owned()), "{accepted:?}");
    let documented: Vec<String> = OpenApi::get()
        .document()
        .pointer(&format!("{CURRENCY_CODE}/enum"))
        .and_then(Value::as_array)
        .map(|codes| codes.iter().filter_map(Value::as_str).map(str::to_owned).collect())
        .unwrap_or_default();
    assert!(
        documented == accepted,
        "the enum of {CURRENCY_CODE} differs from the codes Currency::parse accepts (the iso_currency table); \
         generated from that table, it reads:\n{}",
        yaml_enum(&accepted)
    );
}

#[test]
fn the_amount_pattern_accepts_exactly_what_parse_amount_accepts() {
    let nines = |n: usize| "9".repeat(n);
    let wholes = [
        String::new(),
        "0".into(),
        "00".into(),
        "01".into(),
        "1".into(),
        "10".into(),
        "-1".into(),
        "+1".into(),
        " 1".into(),
        "１".into(),
        nines(23),
        nines(24),
        nines(25),
        format!("1{}", "0".repeat(23)),
    ];
    let fractions = [
        None,
        Some(String::new()),
        Some("0".into()),
        Some("0000".into()),
        Some("00000".into()),
        Some("5".into()),
        Some("05".into()),
        Some("0001".into()),
        Some("00001".into()),
        Some("1234".into()),
        Some("12345".into()),
        Some("12340".into()),
        Some("123400000".into()),
        Some(format!("0001{}", "0".repeat(23))),
        Some(format!("0001{}", "0".repeat(24))),
        Some("0".repeat(30)),
        Some("5 ".into()),
        Some("5e3".into()),
    ];
    let mut texts: Vec<String> = ["1e3", "NaN", "0x10", "1,00", "1.2.3", ".", "", "0.", ".5"].map(String::from).to_vec();
    for whole in &wholes {
        for fraction in &fractions {
            texts.push(match fraction {
                Some(fraction) => format!("{whole}.{fraction}"),
                None => whole.clone(),
            });
        }
    }
    let spec = OpenApi::get();
    let disagreements: Vec<String> = texts
        .iter()
        .filter_map(|text| {
            let documented = spec.accepts(POSITIVE_AMOUNT, &json!(text));
            let parsed = parse_amount(text);
            (documented != parsed.is_ok()).then(|| format!("{text:?}: openapi.yaml {documented}, parse_amount {parsed:?}"))
        })
        .collect();
    assert!(texts.len() > 200);
    assert!(disagreements.is_empty(), "{POSITIVE_AMOUNT} and parse_amount disagree:\n{}", disagreements.join("\n"));
}

/// A value the document accepts gets `accepted` (whatever the outcome), one it refuses gets
/// `refused` (the shape's own problem): never the other.
#[track_caller]
fn assert_agrees(pointer: &str, value: &Value, status: u16, accepted: &[u16], refused: u16) {
    let documented = OpenApi::get().accepts(pointer, value);
    let expected: &[u16] = if documented { accepted } else { &[refused] };
    assert!(
        expected.contains(&status),
        "{value:?} is {} by {pointer}, but the server answered {status}",
        if documented { "accepted" } else { "refused" }
    );
}

#[tokio::test]
async fn the_server_refuses_exactly_the_boundary_values_the_document_refuses() {
    let app = TestApp::spawn().await;
    let alice = verified(&app, "shapes").await;
    let bob = verified(&app, "shapes-to").await;
    let from = funded_wallet(&app, &alice, "USD", "100").await;
    let to = wallet(&app, &bob, "USD").await;

    let controls = ["Ada\u{0}", "Ada\u{7f}", "Ada\u{85}", "\tAda", "Ada\u{9f}"];
    let mut names: Vec<String> = ["Ada", " Ada ", "", " ", "\u{3000}", "\u{a0}Ada", "\u{feff}", "Ada Lovelace-Byron"]
        .map(String::from)
        .to_vec();
    names.extend(controls.map(String::from));
    names.extend(["x".repeat(100), "x".repeat(101), format!(" {} ", "x".repeat(99))]);
    for name in &names {
        let reply = app.patch("/users/me").bearer(&alice.access).json(&json!({ "fullName": name })).send().await;
        assert_agrees("/components/schemas/FullName", &json!(name), reply.status, &[200], 422);
    }

    let mut descriptions: Vec<String> = ["Lunch", "", "  ", " Lunch ", "\u{3000}"].map(String::from).to_vec();
    descriptions.extend(controls.map(String::from));
    descriptions.extend(["x".repeat(200), "x".repeat(201), format!(" {}", "x".repeat(200))]);
    for description in &descriptions {
        let body = json!({ "fromAccountId": from, "toAccountId": to, "amount": "0.01", "currency": "USD", "description": description });
        let reply = app.post("/transfers").bearer(&alice.access).header("idempotency-key", key()).json(&body).send().await;
        assert_agrees("/components/schemas/TransferDescription", &json!(description), reply.status, &[201], 422);
    }

    let canonical = format!("{}A", "x".repeat(42));
    let tokens = [
        canonical.clone(),
        format!("{}w", "-_".repeat(21)),
        format!("{}B", "x".repeat(42)),
        format!(" {canonical}"),
        format!("{canonical}="),
        "x".repeat(42),
        String::new(),
        format!("{}+A", "x".repeat(41)),
    ];
    for token in &tokens {
        // Tokens the schema refuses were never issued: no such token, as for a well-formed one.
        let reply = app.post("/auth/verify-email").json(&json!({ "token": token })).send().await;
        assert_agrees("/components/schemas/VerificationToken", &json!(token), reply.status, &[400], 400);
        assert_eq!(reply.problem(), "verification-token-invalid");
    }

    for cursor in ["", "0000000000000000", "000000000000002a", "7fffffffffffffff", "8000000000000000", "000000000000002A", "2a", "forged"] {
        let reply = app
            .get(&format!("/accounts/{from}/transactions?cursor={cursor}"))
            .bearer(&alice.access)
            .send()
            .await;
        assert_agrees("/components/parameters/Cursor/schema", &json!(cursor), reply.status, &[200], 422);
    }

    let keys = [String::new(), "!".into(), "~".into(), "a b".into(), "x".repeat(255), "x".repeat(256)];
    for idempotency_key in &keys {
        let reply = app
            .post("/deposits")
            .bearer(&alice.access)
            .header("idempotency-key", idempotency_key.clone())
            .json(&json!({ "accountId": from, "amount": "1" }))
            .send()
            .await;
        assert_agrees("/components/schemas/IdempotencyKey", &json!(idempotency_key), reply.status, &[201], 400);
    }

    // Currency codes are matched case-insensitively, as documented; the enum lists each once.
    for (currency, status) in [("EUR", 201), ("eur", 409), ("Eur", 409), ("XAU", 422), ("ABC", 422), ("EURO", 422)] {
        let reply = app.post("/accounts").bearer(&bob.access).json(&json!({ "currency": currency })).send().await;
        reply.expect(status);
    }
    deposit(&app, &alice, &from, "0").await.expect(422);
}
