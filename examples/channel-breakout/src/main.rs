//! The `channel-breakout` binary: btopt's whole CLI with one more strategy.

fn main() -> std::process::ExitCode {
    btopt::main_with(engine::Registry::builtin().with(channel_breakout::ChannelBreakout))
}
