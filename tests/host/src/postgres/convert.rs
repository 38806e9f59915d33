//! Spin's type mapping between `spin:postgres@4.0.0` values and PostgreSQL, reproduced
//! from factor-outbound-pg: the same Rust types are bound and decoded, so the same
//! combinations fail (an `int64` parameter for an `int4` column, a TIMESTAMPTZ column in a
//! result, a NaN numeric) and the same ones succeed.

use std::error::Error as StdError;

use anyhow::{Context, anyhow};
use bytes::{Buf, BufMut, BytesMut};
use chrono::{Datelike, NaiveDate, NaiveDateTime, NaiveTime, Timelike};
use postgres_types::{FromSql, IsNull, Kind, ToSql, Type, to_sql_checked};
use rust_decimal::Decimal;
use tokio_postgres::Row;

use crate::bindings::spin::postgres4_2_0::postgres::{
    Column, DbDataType, DbValue, Interval, ParameterValue, RangeBoundKind,
};

type BoxError = Box<dyn StdError + Sync + Send>;
pub type SqlParam = Box<dyn ToSql + Send + Sync>;

/// Converts one guest parameter into the Rust value Spin binds for it.
pub fn to_sql_parameter(value: &ParameterValue) -> anyhow::Result<SqlParam> {
    Ok(match value {
        ParameterValue::Boolean(v) => Box::new(*v),
        // Spin binds `int8` as a Rust i8, which Postgres accepts only for `"char"`.
        ParameterValue::Int8(v) => Box::new(*v),
        ParameterValue::Int16(v) => Box::new(*v),
        ParameterValue::Int32(v) => Box::new(*v),
        ParameterValue::Int64(v) => Box::new(*v),
        ParameterValue::Floating32(v) => Box::new(*v),
        ParameterValue::Floating64(v) => Box::new(*v),
        ParameterValue::Str(v) => Box::new(v.clone()),
        ParameterValue::Binary(v) => Box::new(v.clone()),
        ParameterValue::Date((y, m, d)) => Box::new(date(*y, *m, *d)?),
        ParameterValue::Time((h, min, s, ns)) => Box::new(time(*h, *min, *s, *ns)?),
        ParameterValue::Datetime((y, mon, d, h, min, s, ns)) => {
            Box::new(NaiveDateTime::new(date(*y, *mon, *d)?, time(*h, *min, *s, *ns)?))
        }
        // Whole seconds, bound as a timestamptz.
        ParameterValue::Timestamp(v) => Box::new(
            chrono::DateTime::<chrono::Utc>::from_timestamp(*v, 0).ok_or_else(|| anyhow!("invalid epoch timestamp {v}"))?,
        ),
        ParameterValue::Uuid(v) => Box::new(uuid::Uuid::parse_str(v).with_context(|| format!("invalid UUID {v}"))?),
        ParameterValue::Jsonb(v) => Box::new(
            serde_json::from_slice::<serde_json::Value>(v)
                .with_context(|| format!("invalid JSON {}", String::from_utf8_lossy(v)))?,
        ),
        ParameterValue::Decimal(v) => Box::new(decimal(v)?),
        ParameterValue::RangeInt32((lower, upper)) => Box::new(PgRange {
            lower: *lower,
            upper: *upper,
        }),
        ParameterValue::RangeInt64((lower, upper)) => Box::new(PgRange {
            lower: *lower,
            upper: *upper,
        }),
        ParameterValue::RangeDecimal((lower, upper)) => {
            let bound = |b: &Option<(String, RangeBoundKind)>| -> anyhow::Result<Option<(Decimal, RangeBoundKind)>> {
                b.as_ref().map(|(v, kind)| Ok((decimal(v)?, *kind))).transpose()
            };
            Box::new(PgRange {
                lower: bound(lower)?,
                upper: bound(upper)?,
            })
        }
        ParameterValue::ArrayInt32(v) => Box::new(v.clone()),
        ParameterValue::ArrayInt64(v) => Box::new(v.clone()),
        ParameterValue::ArrayDecimal(v) => Box::new(
            v.iter()
                .map(|d| d.as_deref().map(decimal).transpose())
                .collect::<anyhow::Result<Vec<Option<Decimal>>>>()?,
        ),
        ParameterValue::ArrayStr(v) => Box::new(v.clone()),
        ParameterValue::Interval(v) => Box::new(PgInterval(*v)),
        ParameterValue::DbNull => Box::new(PgNull),
    })
}

fn date(y: i32, m: u8, d: u8) -> anyhow::Result<NaiveDate> {
    NaiveDate::from_ymd_opt(y, m.into(), d.into()).ok_or_else(|| anyhow!("invalid date y={y}, m={m}, d={d}"))
}

fn time(h: u8, m: u8, s: u8, ns: u32) -> anyhow::Result<NaiveTime> {
    NaiveTime::from_hms_nano_opt(h.into(), m.into(), s.into(), ns).ok_or_else(|| anyhow!("invalid time {h}:{m}:{s}:{ns}"))
}

fn decimal(v: &str) -> anyhow::Result<Decimal> {
    Decimal::from_str_exact(v).with_context(|| format!("invalid decimal {v}"))
}

/// The column type Spin reports for a Postgres type.
pub fn data_type(ty: &Type) -> DbDataType {
    match *ty {
        Type::BOOL => DbDataType::Boolean,
        Type::BYTEA => DbDataType::Binary,
        Type::FLOAT4 => DbDataType::Floating32,
        Type::FLOAT8 => DbDataType::Floating64,
        Type::INT2 => DbDataType::Int16,
        Type::INT4 => DbDataType::Int32,
        Type::INT8 => DbDataType::Int64,
        Type::TEXT | Type::VARCHAR | Type::BPCHAR => DbDataType::Str,
        Type::TIMESTAMP | Type::TIMESTAMPTZ => DbDataType::Datetime,
        Type::DATE => DbDataType::Date,
        Type::TIME => DbDataType::Time,
        Type::UUID => DbDataType::Uuid,
        Type::JSONB => DbDataType::Jsonb,
        Type::NUMERIC => DbDataType::Decimal,
        Type::INT4_RANGE => DbDataType::RangeInt32,
        Type::INT8_RANGE => DbDataType::RangeInt64,
        Type::NUM_RANGE => DbDataType::RangeDecimal,
        Type::INT4_ARRAY => DbDataType::ArrayInt32,
        Type::INT8_ARRAY => DbDataType::ArrayInt64,
        Type::NUMERIC_ARRAY => DbDataType::ArrayDecimal,
        Type::TEXT_ARRAY | Type::VARCHAR_ARRAY | Type::BPCHAR_ARRAY => DbDataType::ArrayStr,
        Type::INTERVAL => DbDataType::Interval,
        ref other => DbDataType::Other(other.name().to_owned()),
    }
}

/// Spin derives the columns from the first row: an empty result has no column metadata.
pub fn columns(rows: &[Row]) -> Vec<Column> {
    rows.first()
        .map(|row| {
            row.columns()
                .iter()
                .map(|c| Column {
                    name: c.name().to_owned(),
                    data_type: data_type(c.type_()),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Decodes every value of a row; a value Spin cannot decode fails the whole query.
/// What a value counts toward the result limit, as Spin counts it (`DbValue::memory_size`).
pub fn memory_size(value: &DbValue) -> usize {
    let fixed = std::mem::size_of::<DbValue>();
    match value {
        DbValue::ArrayInt32(v) => fixed + v.len() * std::mem::size_of::<Option<i32>>(),
        DbValue::ArrayInt64(v) => fixed + v.len() * std::mem::size_of::<Option<i64>>(),
        DbValue::ArrayDecimal(v) | DbValue::ArrayStr(v) => {
            fixed + v.iter().map(|s| std::mem::size_of::<Option<String>>() + s.as_ref().map_or(0, String::len)).sum::<usize>()
        }
        DbValue::Str(s) | DbValue::Uuid(s) | DbValue::Decimal(s) => fixed + s.len(),
        DbValue::Jsonb(b) | DbValue::Binary(b) | DbValue::Unsupported(b) => fixed + b.len(),
        _ => fixed,
    }
}

pub fn convert_row(row: &Row) -> Result<Vec<DbValue>, tokio_postgres::Error> {
    (0..row.len()).map(|index| convert_entry(row, index)).collect()
}

fn convert_entry(row: &Row, index: usize) -> Result<DbValue, tokio_postgres::Error> {
    fn get<'a, T: FromSql<'a>>(row: &'a Row, index: usize) -> Result<Option<T>, tokio_postgres::Error> {
        row.try_get::<_, Option<T>>(index)
    }
    let ty = row.columns()[index].type_();
    let value = match *ty {
        Type::BOOL => get(row, index)?.map(DbValue::Boolean),
        Type::BYTEA => get(row, index)?.map(DbValue::Binary),
        Type::FLOAT4 => get(row, index)?.map(DbValue::Floating32),
        Type::FLOAT8 => get(row, index)?.map(DbValue::Floating64),
        Type::INT2 => get(row, index)?.map(DbValue::Int16),
        Type::INT4 => get(row, index)?.map(DbValue::Int32),
        Type::INT8 => get(row, index)?.map(DbValue::Int64),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR => get(row, index)?.map(DbValue::Str),
        // Spin decodes both timestamp types as NaiveDateTime, which postgres-types accepts
        // only for TIMESTAMP: reading a TIMESTAMPTZ column fails the query, as under Spin.
        Type::TIMESTAMP | Type::TIMESTAMPTZ => get::<NaiveDateTime>(row, index)?.map(|v| {
            DbValue::Datetime((
                v.year(),
                v.month() as u8,
                v.day() as u8,
                v.hour() as u8,
                v.minute() as u8,
                v.second() as u8,
                v.nanosecond(),
            ))
        }),
        Type::DATE => get::<NaiveDate>(row, index)?.map(|v| DbValue::Date((v.year(), v.month() as u8, v.day() as u8))),
        Type::TIME => get::<NaiveTime>(row, index)?
            .map(|v| DbValue::Time((v.hour() as u8, v.minute() as u8, v.second() as u8, v.nanosecond()))),
        Type::UUID => get::<uuid::Uuid>(row, index)?.map(|v| DbValue::Uuid(v.to_string())),
        Type::JSONB => get::<serde_json::Value>(row, index)?
            .map(|v| DbValue::Jsonb(serde_json::to_vec(&v).unwrap_or_default())),
        Type::NUMERIC => get::<Decimal>(row, index)?.map(|v| DbValue::Decimal(v.to_string())),
        Type::INT4_RANGE => get::<PgRange<i32>>(row, index)?.map(|r| DbValue::RangeInt32((r.lower, r.upper))),
        Type::INT8_RANGE => get::<PgRange<i64>>(row, index)?.map(|r| DbValue::RangeInt64((r.lower, r.upper))),
        Type::NUM_RANGE => get::<PgRange<Decimal>>(row, index)?.map(|r| {
            let text = |b: Option<(Decimal, RangeBoundKind)>| b.map(|(v, kind)| (v.to_string(), kind));
            DbValue::RangeDecimal((text(r.lower), text(r.upper)))
        }),
        Type::INT4_ARRAY => get(row, index)?.map(DbValue::ArrayInt32),
        Type::INT8_ARRAY => get(row, index)?.map(DbValue::ArrayInt64),
        Type::NUMERIC_ARRAY => get::<Vec<Option<Decimal>>>(row, index)?
            .map(|v| DbValue::ArrayDecimal(v.into_iter().map(|d| d.map(|d| d.to_string())).collect())),
        Type::TEXT_ARRAY | Type::VARCHAR_ARRAY | Type::BPCHAR_ARRAY => get(row, index)?.map(DbValue::ArrayStr),
        Type::INTERVAL => get::<PgInterval>(row, index)?.map(|v| DbValue::Interval(v.0)),
        _ => get::<RawBytes>(row, index)?.map(|v| DbValue::Unsupported(v.0)),
    };
    Ok(value.unwrap_or(DbValue::DbNull))
}

/// NULL of whatever type the statement expects.
#[derive(Debug)]
struct PgNull;

impl ToSql for PgNull {
    fn to_sql(&self, _: &Type, _: &mut BytesMut) -> Result<IsNull, BoxError> {
        Ok(IsNull::Yes)
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

/// Any value's binary wire form, for types Spin does not map.
struct RawBytes(Vec<u8>);

impl<'a> FromSql<'a> for RawBytes {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        Ok(Self(raw.to_vec()))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

/// INTERVAL's binary form: microseconds, days, months.
#[derive(Debug)]
struct PgInterval(Interval);

impl ToSql for PgInterval {
    fn to_sql(&self, _: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        out.put_i64(self.0.micros);
        out.put_i32(self.0.days);
        out.put_i32(self.0.months);
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::INTERVAL
    }

    to_sql_checked!();
}

impl<'a> FromSql<'a> for PgInterval {
    fn from_sql(_: &Type, mut raw: &'a [u8]) -> Result<Self, BoxError> {
        if raw.len() != 16 {
            return Err("invalid interval length".into());
        }
        Ok(Self(Interval {
            micros: raw.get_i64(),
            days: raw.get_i32(),
            months: raw.get_i32(),
        }))
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::INTERVAL
    }
}

/// A range with optional bounds; an empty range reads as two missing bounds.
#[derive(Debug)]
struct PgRange<T> {
    lower: Option<(T, RangeBoundKind)>,
    upper: Option<(T, RangeBoundKind)>,
}

/// Which range type holds elements of a Rust type.
trait RangeElement {
    const RANGE_TYPE: Type;
}

impl RangeElement for i32 {
    const RANGE_TYPE: Type = Type::INT4_RANGE;
}

impl RangeElement for i64 {
    const RANGE_TYPE: Type = Type::INT8_RANGE;
}

impl RangeElement for Decimal {
    const RANGE_TYPE: Type = Type::NUM_RANGE;
}

fn element_type(ty: &Type) -> Result<&Type, BoxError> {
    match ty.kind() {
        Kind::Range(inner) => Ok(inner),
        _ => Err(format!("{ty} is not a range type").into()),
    }
}

impl<T: ToSql + RangeElement + std::fmt::Debug + Sync> ToSql for PgRange<T> {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        use postgres_protocol::{
            IsNull as WireNull,
            types::{RangeBound, range_to_sql},
        };
        let inner = element_type(ty)?;
        let write = |bound: &Option<(T, RangeBoundKind)>, buf: &mut BytesMut| -> Result<RangeBound<WireNull>, BoxError> {
            let value = |value: &T, buf: &mut BytesMut| -> Result<WireNull, BoxError> {
                Ok(match value.to_sql(inner, buf)? {
                    IsNull::Yes => WireNull::Yes,
                    IsNull::No => WireNull::No,
                })
            };
            Ok(match bound {
                None => RangeBound::Unbounded,
                Some((v, RangeBoundKind::Inclusive)) => RangeBound::Inclusive(value(v, buf)?),
                Some((v, RangeBoundKind::Exclusive)) => RangeBound::Exclusive(value(v, buf)?),
            })
        };
        range_to_sql(|buf| write(&self.lower, buf), |buf| write(&self.upper, buf), out)?;
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == T::RANGE_TYPE
    }

    to_sql_checked!();
}

impl<'a, T: FromSql<'a> + RangeElement> FromSql<'a> for PgRange<T> {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        use postgres_protocol::types::{Range, RangeBound, range_from_sql};
        let inner = element_type(ty)?;
        let read = |bound: RangeBound<Option<&'a [u8]>>| -> Result<Option<(T, RangeBoundKind)>, BoxError> {
            Ok(match bound {
                RangeBound::Unbounded => None,
                RangeBound::Inclusive(value) => Some((T::from_sql_nullable(inner, value)?, RangeBoundKind::Inclusive)),
                RangeBound::Exclusive(value) => Some((T::from_sql_nullable(inner, value)?, RangeBoundKind::Exclusive)),
            })
        };
        match range_from_sql(raw)? {
            Range::Empty => Ok(Self { lower: None, upper: None }),
            Range::Nonempty(lower, upper) => Ok(Self {
                lower: read(lower)?,
                upper: read(upper)?,
            }),
        }
    }

    fn accepts(ty: &Type) -> bool {
        *ty == T::RANGE_TYPE
    }
}
