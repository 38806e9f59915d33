// refinery embeds migrations/ at compile time; a new file there must rebuild the bridge.
fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
