// Re-emits the link arguments of the Ruby we build against (needed on macOS for
// `-undefined dynamic_lookup`; harmless on Linux).
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let _ = rb_sys_env::activate()?;
    Ok(())
}
