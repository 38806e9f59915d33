//! `GET /<prefix>/health`: proves the component runs and reaches its database.

use serde::Serialize;

use crate::{
    db::{self, Db, Query},
    http::{self, Response},
    problem::Problem,
};

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Health {
    status: &'static str,
    component: &'static str,
    version: &'static str,
    schema_version: i32,
}

/// Reports the component and the newest migration applied to the database it uses.
pub async fn report(component: &'static str, version: &'static str) -> Result<Response, Problem> {
    let db = Db::connect().await?;
    let row = db.query_one(&Query::select("SELECT COALESCE(MAX(version), 0) FROM refinery_schema_history"), &[]).await?;
    let schema_version: i32 = db::get(&row, 0)?;
    Ok(http::json(
        200,
        &Health {
            status: "ok",
            component,
            version,
            schema_version,
        },
    ))
}
