// A 16 KiB stack instead of the linker's 1 MiB (see wasmpay_policy_runtime's docs, "Memory").
fn main() {
    println!("cargo::rustc-link-arg-cdylib=-zstack-size=16384");
}
