//! The integration suite: the real binary against a fake Duo server over real HTTPS.

mod fake_duo;
mod util;

mod cache;
mod cli;
mod deferral;
mod e2e;
mod factors;
mod failures;
mod fault_matrix;
mod logging;
mod man_pages;
mod secrets;
