//! `btopt`: the command-line interface with the built-in strategies. See design-notes'
//! command-line contract; the CLI itself is the `btopt` library.

fn main() -> std::process::ExitCode {
    btopt::main_with(engine::Registry::builtin())
}
