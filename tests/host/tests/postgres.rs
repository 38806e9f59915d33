//! The host's `spin:postgres@4.0.0` against a real PostgreSQL: the type mapping for every
//! type wasmpay uses (and the failures Spin has), SQLSTATE errors, the allow-list refusal
//! and the pool's session reset. These drive the same functions a guest's calls reach.

use wasmpay_host::{
    AllowedHost, SpinVersion,
    pg_types::{DbDataType, DbValue, Error as PgError, ParameterValue, QueryError, RangeBoundKind},
    postgres::{self, ClientFactory, Connection},
};
use wasmpay_test_support::postgres::{Database, migrated_database, server};

async fn database() -> Database {
    migrated_database().await.expect("a test database")
}

fn allow_server() -> Vec<AllowedHost> {
    vec![AllowedHost::parse(&format!("postgres://{}", server().host_port())).unwrap()]
}

async fn connect(factory: &ClientFactory, db: &Database) -> Connection {
    postgres::open(factory, Ok(&allow_server()), &db.url, None).await.expect("connection")
}

async fn single(client: &Connection, sql: &str, params: &[ParameterValue]) -> (DbDataType, DbValue) {
    let rows = postgres::query(client, sql, params)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    (rows.columns[0].data_type.clone(), rows.rows[0][0].clone())
}

#[tokio::test]
async fn results_map_to_spins_types() {
    let factory = ClientFactory::default();
    let db = database().await;
    let client = connect(&factory, &db).await;
    let cases: Vec<(&str, DbDataType, DbValue)> = vec![
        ("SELECT true", DbDataType::Boolean, DbValue::Boolean(true)),
        ("SELECT 7::int2", DbDataType::Int16, DbValue::Int16(7)),
        ("SELECT 7::int4", DbDataType::Int32, DbValue::Int32(7)),
        ("SELECT 7::int8", DbDataType::Int64, DbValue::Int64(7)),
        ("SELECT 1.5::float4", DbDataType::Floating32, DbValue::Floating32(1.5)),
        ("SELECT 1.5::float8", DbDataType::Floating64, DbValue::Floating64(1.5)),
        ("SELECT 'é'::text", DbDataType::Str, DbValue::Str("é".into())),
        ("SELECT 'ab'::varchar(5)", DbDataType::Str, DbValue::Str("ab".into())),
        ("SELECT 'ab'::char(4)", DbDataType::Str, DbValue::Str("ab  ".into())),
        ("SELECT '\\x0102'::bytea", DbDataType::Binary, DbValue::Binary(vec![1, 2])),
        ("SELECT DATE '2026-11-21'", DbDataType::Date, DbValue::Date((2026, 11, 21))),
        ("SELECT TIME '13:14:15.5'", DbDataType::Time, DbValue::Time((13, 14, 15, 500_000_000))),
        (
            "SELECT TIMESTAMP '2026-11-21 13:14:15.000001'",
            DbDataType::Datetime,
            DbValue::Datetime((2026, 11, 21, 13, 14, 15, 1_000)),
        ),
        (
            "SELECT '0190f5b2-7c5e-7cc1-8d4e-6f0b1a2c3d4e'::uuid",
            DbDataType::Uuid,
            DbValue::Uuid("0190f5b2-7c5e-7cc1-8d4e-6f0b1a2c3d4e".into()),
        ),
        (
            "SELECT '{\"b\": [1, 2], \"a\": null}'::jsonb",
            DbDataType::Jsonb,
            DbValue::Jsonb(br#"{"a":null,"b":[1,2]}"#.to_vec()),
        ),
        ("SELECT 12.340::numeric", DbDataType::Decimal, DbValue::Decimal("12.340".into())),
        ("SELECT 0::numeric(20,2)", DbDataType::Decimal, DbValue::Decimal("0.00".into())),
        (
            "SELECT ARRAY[1, NULL]::int4[]",
            DbDataType::ArrayInt32,
            DbValue::ArrayInt32(vec![Some(1), None]),
        ),
        (
            "SELECT ARRAY['a', NULL]::text[]",
            DbDataType::ArrayStr,
            DbValue::ArrayStr(vec![Some("a".into()), None]),
        ),
        (
            "SELECT ARRAY[1.50]::numeric[]",
            DbDataType::ArrayDecimal,
            DbValue::ArrayDecimal(vec![Some("1.50".into())]),
        ),
        (
            "SELECT int4range(1, 5, '[]')",
            DbDataType::RangeInt32,
            DbValue::RangeInt32((Some((1, RangeBoundKind::Inclusive)), Some((6, RangeBoundKind::Exclusive)))),
        ),
        ("SELECT NULL::int4", DbDataType::Int32, DbValue::DbNull),
        ("SELECT 'x'::name", DbDataType::Other("name".into()), DbValue::Unsupported(b"x".to_vec())),
        ("SELECT '{}'::json", DbDataType::Other("json".into()), DbValue::Unsupported(b"{}".to_vec())),
    ];
    for (sql, data_type, value) in cases {
        assert_eq!(single(&client, sql, &[]).await, (data_type, value), "{sql}");
    }
}

#[tokio::test]
async fn parameters_bind_as_spin_binds_them() {
    let factory = ClientFactory::default();
    let db = database().await;
    let client = connect(&factory, &db).await;
    let round_trips = vec![
        ("SELECT $1::int4", ParameterValue::Int32(-3), DbValue::Int32(-3)),
        ("SELECT $1::int8", ParameterValue::Int64(1 << 40), DbValue::Int64(1 << 40)),
        ("SELECT $1::text", ParameterValue::Str("it's".into()), DbValue::Str("it's".into())),
        ("SELECT $1::numeric", ParameterValue::Decimal("0.10".into()), DbValue::Decimal("0.10".into())),
        (
            "SELECT $1::uuid",
            ParameterValue::Uuid("0190F5B2-7C5E-7CC1-8D4E-6F0B1A2C3D4E".into()),
            DbValue::Uuid("0190f5b2-7c5e-7cc1-8d4e-6f0b1a2c3d4e".into()),
        ),
        (
            "SELECT $1::jsonb",
            ParameterValue::Jsonb(br#"{"k": 1}"#.to_vec()),
            DbValue::Jsonb(br#"{"k":1}"#.to_vec()),
        ),
        (
            "SELECT $1::timestamp",
            ParameterValue::Datetime((2026, 1, 2, 3, 4, 5, 6_000)),
            DbValue::Datetime((2026, 1, 2, 3, 4, 5, 6_000)),
        ),
        (
            "SELECT ($1::timestamptz AT TIME ZONE 'UTC')",
            ParameterValue::Timestamp(1_700_000_000),
            DbValue::Datetime((2023, 11, 14, 22, 13, 20, 0)),
        ),
        ("SELECT $1::int4", ParameterValue::DbNull, DbValue::DbNull),
        (
            "SELECT $1::int8[]",
            ParameterValue::ArrayInt64(vec![Some(1), None]),
            DbValue::ArrayInt64(vec![Some(1), None]),
        ),
        ("SELECT $1::bytea", ParameterValue::Binary(vec![0, 255]), DbValue::Binary(vec![0, 255])),
    ];
    for (sql, param, value) in round_trips {
        assert_eq!(single(&client, sql, std::slice::from_ref(&param)).await.1, value, "{sql} with {param:?}");
    }
}

/// The trap from NOTES.md: Spin cannot read TIMESTAMPTZ, nor bind a datetime to one.
#[tokio::test]
async fn timestamptz_fails_as_under_spin() {
    let factory = ClientFactory::default();
    let db = database().await;
    let client = connect(&factory, &db).await;
    let read = postgres::query(&client, "SELECT now()", &[]).await;
    match read {
        Err(PgError::QueryFailed(QueryError::Text(text))) => {
            assert!(text.contains("NaiveDateTime") && text.contains("timestamptz"), "{text}");
        }
        other => panic!("reading a timestamptz must fail the query, got {other:?}"),
    }
    let bind = postgres::query(
        &client,
        "SELECT $1::timestamptz IS NOT NULL",
        &[ParameterValue::Datetime((2026, 1, 1, 0, 0, 0, 0))],
    )
    .await;
    assert!(matches!(bind, Err(PgError::QueryFailed(QueryError::Text(_)))), "{bind:?}");
    let (data_type, _) = single(&client, "SELECT now() AT TIME ZONE 'UTC'", &[]).await;
    assert_eq!(data_type, DbDataType::Datetime, "TIMESTAMP (UTC by convention) reads fine");
}

#[tokio::test]
async fn parameter_types_are_checked_strictly() {
    let factory = ClientFactory::default();
    let db = database().await;
    let client = connect(&factory, &db).await;
    for (sql, param) in [
        ("SELECT $1::int4", ParameterValue::Int64(1)),
        ("SELECT $1::int2", ParameterValue::Int8(1)),
        ("SELECT $1::numeric", ParameterValue::Str("1".into())),
    ] {
        let result = postgres::query(&client, sql, &[param]).await;
        assert!(
            matches!(&result, Err(PgError::QueryFailed(QueryError::Text(text))) if text.contains("WrongType")),
            "{sql}: {result:?}"
        );
    }
    let bad_uuid = [ParameterValue::Uuid("not-a-uuid".into())];
    assert!(matches!(
        postgres::query(&client, "SELECT $1::uuid", &bad_uuid).await,
        Err(PgError::BadParameter(text)) if text.starts_with("invalid UUID not-a-uuid")
    ));
    assert!(matches!(
        postgres::execute(&client, "SELECT $1::uuid", &bad_uuid).await,
        Err(PgError::ValueConversionFailed(_))
    ));
}

#[tokio::test]
async fn empty_results_carry_no_columns_and_errors_carry_sqlstate() {
    let factory = ClientFactory::default();
    let db = database().await;
    let client = connect(&factory, &db).await;
    let empty = postgres::query(&client, "SELECT 1 AS one WHERE false", &[]).await.unwrap();
    assert!(empty.columns.is_empty() && empty.rows.is_empty());

    postgres::execute(&client, "CREATE TABLE t (k int4 CONSTRAINT t_pk PRIMARY KEY)", &[])
        .await
        .unwrap();
    assert_eq!(
        postgres::execute(&client, "INSERT INTO t VALUES (1), (2)", &[]).await.unwrap(),
        2
    );
    match postgres::execute(&client, "INSERT INTO t VALUES ($1)", &[ParameterValue::Int32(1)]).await {
        Err(PgError::QueryFailed(QueryError::DbError(e))) => {
            assert_eq!((e.code.as_str(), e.severity.as_str()), ("23505", "ERROR"));
            assert!(e.extras.contains(&("constraint".into(), "t_pk".into())), "{:?}", e.extras);
            assert!(e.detail.unwrap().contains("(k)=(1)"));
        }
        other => panic!("expected a unique violation, got {other:?}"),
    }
    assert!(matches!(
        postgres::query(&client, "SELEC 1", &[]).await,
        Err(PgError::QueryFailed(QueryError::DbError(e))) if e.code == "42601"
    ));
}

#[tokio::test]
async fn addresses_outside_allowed_outbound_hosts_are_refused() {
    let factory = ClientFactory::default();
    let db = database().await;
    let port = server().port();
    let other_port = vec![AllowedHost::parse(&format!("postgres://127.0.0.1:{}", port + 1)).unwrap()];
    match postgres::open(&factory, Ok(&other_port), &db.url, None).await {
        Err(PgError::ConnectionFailed(message)) => {
            assert_eq!(message, format!("address postgres://127.0.0.1:{port} is not permitted"));
        }
        other => panic!("expected a refusal, got {:?}", other.map(|_| "a connection")),
    }
    let by_name = vec![AllowedHost::parse(&format!("postgres://localhost:{port}")).unwrap()];
    assert!(
        postgres::open(&factory, Ok(&by_name), &db.url, None).await.is_err(),
        "localhost does not allow 127.0.0.1"
    );
    let unresolved = postgres::open(&factory, Err("provider error: no provider resolved required variable \"db_host\"".into()), &db.url, None).await;
    assert!(matches!(unresolved, Err(PgError::Other(_))));
    assert!(postgres::open(&factory, Ok(&allow_server()), &db.url, None).await.is_ok());
}

#[tokio::test]
async fn connection_failures_surface_at_open() {
    let factory = ClientFactory::default();
    let db = database().await;
    let wrong_database = db.url.replace(&db.name, "no_such_database");
    match postgres::open(&factory, Ok(&allow_server()), &wrong_database, None).await {
        Err(PgError::ConnectionFailed(message)) => assert!(message.contains("no_such_database"), "{message}"),
        other => panic!("expected a connection failure, got {:?}", other.map(|_| "a connection")),
    }
}

/// Spin's pool resets session state ("Clean" recycling) when it hands a connection out again.
#[tokio::test]
async fn a_returned_connection_comes_back_reset() {
    let factory = ClientFactory::default();
    let db = database().await;
    let first = connect(&factory, &db).await;
    let backend = single(&first, "SELECT pg_backend_pid()", &[]).await.1;
    postgres::execute(&first, "SET application_name = 'leaked'", &[]).await.unwrap();
    postgres::execute(&first, "CREATE TEMP TABLE scratch (x int)", &[]).await.unwrap();
    drop(first);
    let second = connect(&factory, &db).await;
    assert_eq!(single(&second, "SELECT pg_backend_pid()", &[]).await.1, backend, "the pool reuses the connection");
    assert_eq!(single(&second, "SHOW application_name", &[]).await.1, DbValue::Str(String::new()));
    assert!(postgres::query(&second, "SELECT * FROM scratch", &[]).await.is_err(), "temp tables are discarded");
}

/// What Spin's "Clean" recycling does NOT do: end a transaction left open. A guest that
/// trapped between BEGIN and COMMIT hands its transaction to the next request on that
/// connection. This is why wasmpay's components never issue BEGIN: each of their
/// transactions is one statement.
#[tokio::test]
async fn an_open_transaction_survives_recycling_as_under_spin() {
    let factory = ClientFactory::default();
    let db = database().await;
    let first = connect(&factory, &db).await;
    postgres::execute(&first, "BEGIN", &[]).await.unwrap();
    let xid = single(&first, "SELECT pg_current_xact_id()::text", &[]).await.1;
    drop(first);
    let second = connect(&factory, &db).await;
    assert_eq!(single(&second, "SELECT pg_current_xact_id_if_assigned()::text", &[]).await.1, xid);
}

#[tokio::test]
async fn a_zero_row_query_fails_loudly_as_spin_4_0_would_hang_and_is_empty_when_fixed() {
    let factory = ClientFactory::default();
    let db = database().await;
    let client = connect(&factory, &db).await;
    let nothing = "SELECT 1 WHERE false";

    let trap = postgres::guest_query(SpinVersion::Spin4_0, &client, nothing, &[])
        .await
        .expect_err("under Spin 4.0.2 a zero-row query must fail the request");
    assert!(format!("{trap:#}").contains("spinframework/spin issue 3671"), "{trap:#}");
    let found = postgres::guest_query(SpinVersion::Spin4_0, &client, "SELECT 1", &[]).await.unwrap().unwrap();
    assert_eq!(found.rows, vec![vec![DbValue::Int32(1)]], "rows are untouched");

    let empty = postgres::guest_query(SpinVersion::Fixed, &client, nothing, &[]).await.unwrap().unwrap();
    assert!(empty.rows.is_empty() && empty.columns.is_empty(), "{empty:?}");

    assert_eq!(SpinVersion::default(), SpinVersion::Spin4_0, "the latest release is the default");
    assert_eq!("4.0.2".parse(), Ok(SpinVersion::Spin4_0));
    assert_eq!("fixed".parse(), Ok(SpinVersion::Fixed));
}

/// The session check (`wasmpay_common::db::Query::session_checked`): whatever a statement
/// matches, Postgres returns at least one row (so the check always runs), data-modifying
/// CTEs run once, the rows keep the statement's order, and an ended session fails the whole
/// statement, writes included.
#[tokio::test]
async fn the_session_check_runs_whatever_the_query_matches() {
    use wasmpay_common::db::Query;
    let factory = ClientFactory::default();
    let db = database().await;
    let client = connect(&factory, &db).await;
    postgres::execute(&client, "CREATE TABLE notes (id int PRIMARY KEY, body text NOT NULL)", &[]).await.unwrap();
    let user: ParameterValue = ParameterValue::Uuid("0190a1b2-0000-7000-8000-000000000001".into());
    let session: ParameterValue = ParameterValue::Uuid("0190a1b2-0000-7000-8000-000000000002".into());
    postgres::execute(
        &client,
        "INSERT INTO identity.users (id, email, email_key, password_hash, full_name) VALUES ($1, 'a@example.com', 'a@example.com', '$2b$04$x', 'A')",
        &[user.clone()],
    )
    .await
    .unwrap();
    postgres::execute(&client, "INSERT INTO identity.sessions (id, user_id) VALUES ($1, $2)", &[session.clone(), user.clone()]).await.unwrap();
    postgres::execute(
        &client,
        "INSERT INTO identity.refresh_tokens (token_hash, user_id, session_id, expires_at)
         VALUES (sha256('t'), $2, $1, (now() AT TIME ZONE 'UTC') + interval '1 hour')",
        &[session.clone(), user.clone()],
    )
    .await
    .unwrap();
    let run = |query: Query<'static>| {
        let client = &client;
        let params = [session.clone(), user.clone()];
        async move {
            postgres::guest_query(SpinVersion::Spin4_0, client, &query.session_checked(1), &params)
                .await
                .unwrap_or_else(|trap| panic!("{query:?} tripped the zero-row guard: {trap:#}"))
        }
    };
    let nothing = run(Query::select("SELECT id, body FROM notes WHERE id = 42")).await.unwrap().rows;
    assert_eq!(nothing.len(), 1);
    assert!(nothing[0].iter().all(|value| *value == DbValue::DbNull), "{nothing:?}");

    let insert = "n AS (INSERT INTO notes VALUES (1, 'first') ON CONFLICT (id) DO NOTHING RETURNING *)";
    let inserted = run(Query::with(insert, "SELECT id, body FROM n")).await.unwrap().rows;
    assert_eq!(inserted[0][0], DbValue::Boolean(true), "the first insert matched");
    assert_eq!(inserted[0][2..], [DbValue::Int32(1), DbValue::Str("first".into())]);
    let conflict = run(Query::with(insert, "SELECT id, body FROM n")).await.unwrap().rows;
    assert_eq!(conflict.len(), 1);
    assert_eq!(conflict[0][0], DbValue::DbNull, "a conflict matches nothing, in one row");

    let ordered = run(Query::select("SELECT n FROM generate_series(1, 200) n ORDER BY n DESC")).await.unwrap().rows;
    let values: Vec<DbValue> = ordered.iter().map(|row| row[2].clone()).collect();
    let expected: Vec<DbValue> = (1..=200).rev().map(DbValue::Int32).collect();
    assert_eq!(values, expected);

    postgres::execute(&client, "UPDATE identity.sessions SET revoked_at = now() AT TIME ZONE 'UTC', revoked_reason = 'logout'", &[])
        .await
        .unwrap();
    let write = run(Query::with("n AS (INSERT INTO notes VALUES (2, 'second') RETURNING *)", "SELECT id FROM n WHERE false")).await;
    assert!(matches!(&write, Err(PgError::QueryFailed(QueryError::Text(text))) if text.contains("28000")), "{write:?}");
    let kept = postgres::query(&client, "SELECT count(*) FROM notes", &[]).await.unwrap();
    assert_eq!(kept.rows, vec![vec![DbValue::Int64(1)]], "the refused statement wrote nothing");
}

#[tokio::test]
async fn a_failed_query_arrives_as_text_under_spin_4_0_and_structured_when_fixed() {
    let factory = ClientFactory::default();
    let db = database().await;
    let client = connect(&factory, &db).await;
    let failing = "SELECT 1 / 0";
    match postgres::guest_query(SpinVersion::Spin4_0, &client, failing, &[]).await.unwrap() {
        Err(PgError::QueryFailed(QueryError::Text(text))) => {
            assert!(text.contains("code: \"22012\""), "the SQLSTATE travels inside the text: {text}");
        }
        other => panic!("expected Spin 4.0.2's text error, got {other:?}"),
    }
    match postgres::guest_query(SpinVersion::Fixed, &client, failing, &[]).await.unwrap() {
        Err(PgError::QueryFailed(QueryError::DbError(error))) => assert_eq!(error.code, "22012"),
        other => panic!("expected a structured error, got {other:?}"),
    }
}
