//! Controller transport frames (`crates/controller/src/network.rs`): `u32` length
//! and JSON, read by a controller's RPC server as envelopes (append entries, votes,
//! snapshots, proposals, heartbeats, membership) and by its peers as replies.
//! Anything can connect to the controller port: refusing is fine, panicking is not.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tokio::runtime::Runtime;

fn runtime() -> &'static Runtime {
    static RT: OnceLock<Runtime> = OnceLock::new();
    RT.get_or_init(|| tokio::runtime::Builder::new_current_thread().build().expect("a runtime"))
}

fuzz_target!(|data: &[u8]| {
    runtime().block_on(karst_controller::read_frames_for_fuzzing(data));
});
