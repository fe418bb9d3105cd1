//! The engine is written against the seam only: its manifest names no concrete backend as a
//! dependency (tests may pick one as a dev-dependency), so it cannot slip back to one. The kit's
//! ABI-level cases use `cryptoki-sys`, the C declarations of PKCS#11 (any module's ABI, not a
//! backend); `cryptoki`, the client's safe wrapper, stays out.

#[test]
fn the_engine_depends_on_no_concrete_backend() {
    for manifest in ["Cargo.toml", "../conformance/Cargo.toml"] {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(manifest);
        let text = std::fs::read_to_string(&path).expect("manifest");
        let deps = text
            .split("\n[")
            .find(|section| section.starts_with("dependencies]"))
            .unwrap_or_else(|| panic!("{} has a [dependencies] table", path.display()));
        assert!(deps.contains("hsmkit-backend"), "{}: the seam is a dependency", path.display());
        for backend in ["hsmkit-emulator", "hsmkit-pkcs11-client", "hsmkit-pkcs11-module", "cryptoki"] {
            let name = |l: &str| l.trim_start().split(['.', ' ', '=']).next().unwrap_or_default().to_string();
            assert!(
                !deps.lines().any(|l| name(l) == backend),
                "{} depends on the concrete backend {backend}",
                path.display()
            );
        }
    }
}
