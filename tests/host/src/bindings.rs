//! Host bindings for the Spin capabilities in the platform contract (`wit/world.wit`).

wasmtime::component::bindgen!({
    path: "../../wit",
    world: "wasmpay:platform/spin-capabilities",
    imports: { default: async | trappable },
    additional_derives: [PartialEq],
    with: {
        "spin:postgres/postgres.connection": crate::postgres::Connection,
    },
});
