//! Host bindings for the Spin capabilities in the platform contract (`wit/world.wit`):
//! Postgres 4.2.0 (which also serves components importing 4.0.0), variables 2.0.0 and 3.0.0.

wasmtime::component::bindgen!({
    path: "../../wit",
    world: "wasmpay:platform/spin-capabilities",
    imports: { default: async | trappable },
    additional_derives: [PartialEq],
    with: {
        "spin:postgres/postgres.connection": crate::postgres::Connection,
        "spin:postgres/postgres.connection-builder": crate::postgres::ConnectionBuilder,
    },
});
