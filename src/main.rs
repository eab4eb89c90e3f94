//! The `loupe` command line: `loupe synth`, `loupe inspect`, ...

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
