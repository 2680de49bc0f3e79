//! `socwire package`: builds the deployable zip (the checks and the layout are
//! [`socwire::package`]'s).

use clap::Args;
use socwire::package::{check_binary, collect, read, write_zip, IMAGE_GLIBC};
use std::path::PathBuf;

/// `socwire package` options.
#[derive(Args, Debug)]
pub struct PackageArgs {
    /// Where to write the zip.
    #[arg(long, default_value = "app.zip")]
    pub output: PathBuf,
    /// The app root (host.json and function-defs/).
    #[arg(long, default_value = ".")]
    pub app_root: PathBuf,
    /// The handler binary to package (default: this executable, e.g. the one `cargo run
    /// --release` or `cross build --release --target x86_64-unknown-linux-musl` built).
    #[arg(long)]
    pub binary: Option<PathBuf>,
    /// Newest glibc symbol version the binary may need.
    #[arg(long, default_value = IMAGE_GLIBC)]
    pub max_glibc: String,
}

/// Builds the package.
pub fn run(args: PackageArgs) -> anyhow::Result<()> {
    let binary_path = match args.binary {
        Some(p) => p,
        None => std::env::current_exe()?,
    };
    let binary = read(&binary_path)?;
    println!("{}", check_binary(&binary, &args.max_glibc)?);
    let entries = collect(&args.app_root, &binary)?;
    write_zip(&entries, &args.output)?;
    for e in &entries {
        println!(
            "  {} {:>10}  {}",
            if e.executable {
                "rwxr-xr-x"
            } else {
                "rw-r--r--"
            },
            e.data.len(),
            e.name
        );
    }
    println!(
        "wrote {} ({} files); publish it as docs/deploying.md says (Premium: upload to the \
         app-package container; Flex Consumption: az functionapp deployment source config-zip)",
        args.output.display(),
        entries.len(),
    );
    Ok(())
}
