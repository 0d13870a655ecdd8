//! The operating system's random number generator, as every secret and
//! identifier is made from it (SPEC §9).

use rand::rngs::SysRng;

/// The OS generator failed: nothing secret can be made. On Linux this
/// does not happen once the system has booted; it is an error, not a
/// panic, so that a request that meets it gets a 500 and the service lives.
#[derive(Debug, thiserror::Error)]
#[error("the operating system's random number generator failed")]
pub struct RandomError;

/// Runs `make` with the OS generator.
pub(crate) fn with_os_rng<T, E>(make: impl FnOnce(&mut SysRng) -> Result<T, E>) -> Result<T, RandomError> {
    make(&mut SysRng).map_err(|_| RandomError)
}

/// Fills `buf` from the OS generator.
pub(crate) fn fill(buf: &mut [u8]) -> Result<(), RandomError> {
    use rand::TryRng;
    SysRng.try_fill_bytes(buf).map_err(|_| RandomError)
}
