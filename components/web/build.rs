//! Embeds the built front end (`app/dist/`, produced by `node app/build.mjs`, which `cargo
//! xtask build` and `spin build` run first) into the component: one table of
//! (URL path, content type, ETag, bytes). The component is then one self-contained file.

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
};

use sha2::{Digest, Sha256};

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let dist = manifest_dir.join("app/dist");
    println!("cargo:rerun-if-changed={}", dist.display());
    if !dist.join("app/index.html").is_file() {
        panic!(
            "{} holds no built web app: run `cargo xtask build` (or `npm ci && node build.mjs` in components/web/app)",
            dist.display()
        );
    }
    let mut files = Vec::new();
    collect(&dist, &mut files);
    files.sort();
    let mut table = String::from("pub static ASSETS: &[Asset] = &[\n");
    for file in &files {
        let relative = file.strip_prefix(&dist).unwrap();
        let url = format!("/{}", relative.to_str().expect("asset paths are UTF-8").replace('\\', "/"));
        let bytes = std::fs::read(file).unwrap();
        let etag: String = Sha256::digest(&bytes)[..12].iter().map(|b| format!("{b:02x}")).collect();
        writeln!(
            table,
            "    Asset {{ path: {url:?}, content_type: {:?}, etag: \"\\\"{etag}\\\"\", body: include_bytes!({:?}) }},",
            content_type(file),
            file.display().to_string()
        )
        .unwrap();
    }
    table.push_str("];\n");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap()).join("assets.rs");
    std::fs::write(out, table).unwrap();
}

fn collect(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect(&path, files);
        } else {
            files.push(path);
        }
    }
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or_default() {
        "html" => "text/html; charset=utf-8",
        "js" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "json" | "map" => "application/json",
        "yaml" => "application/yaml",
        "txt" => "text/plain; charset=utf-8",
        other => panic!("{}: no content type is known for .{other}", path.display()),
    }
}
