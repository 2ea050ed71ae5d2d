//! `hipaa-mesh package`: the built `hipaa_mesh.wasm` as an OCI image layout directory, ready to push
//! with standard tools (`skopeo copy oci:DIR:TAG docker://...`, `oras cp --from-oci-layout`).

use crate::oci;
use crate::render_envoy::MODULE;
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct PackageArgs {
    /// Where the built module is (`hipaa_mesh.wasm`).
    #[arg(long, default_value = "target/wasm")]
    pub wasm_dir: PathBuf,
    /// The OCI image layout is written to OUT/hipaa-mesh.
    #[arg(long, default_value = "target/oci")]
    pub out: PathBuf,
    /// The tag recorded in each layout's index (the WasmPlugins pull `:TAG`).
    #[arg(long, default_value = env!("CARGO_PKG_VERSION"))]
    pub tag: String,
}

pub fn run(args: PackageArgs) -> Result<ExitCode, String> {
    let module = MODULE;
    let file = format!("hipaa_{module}.wasm");
    let path = args.wasm_dir.join(&file);
    let wasm = std::fs::read(&path).map_err(|e| {
        format!(
            "cannot package: {}: {e} (build the module with `make build`)",
            path.display()
        )
    })?;
    let image = oci::image(&wasm, &file, &args.tag);
    println!(
        "{:<18} {:<73} wasm sha256",
        "image", "manifest digest (the WasmPlugin's sha256)"
    );
    let dir = args.out.join(format!("hipaa-{module}"));
    if dir.exists() {
        std::fs::remove_dir_all(&dir)
            .map_err(|e| format!("cannot replace {}: {e}", dir.display()))?;
    }
    oci::write_layout(&image, &dir, &args.tag)?;
    println!(
        "{:<18} sha256:{} {}",
        format!("hipaa-{module}"),
        image.manifest_digest,
        image.wasm_sha256
    );
    println!(
        "\nOCI image layout in {}/hipaa-mesh; push it with, e.g.:\n  skopeo copy --preserve-digests oci:{}/hipaa-mesh:{} docker://REGISTRY/hipaa-mesh:{}",
        args.out.display(),
        args.out.display(),
        args.tag,
        args.tag
    );
    Ok(ExitCode::SUCCESS)
}
