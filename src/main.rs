//! The `ffwd` command line (see `ffwd --help`).
fn main() {
    std::process::exit(ffwd_train::cli::main());
}
