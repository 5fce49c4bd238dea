//! Object storage that refuses: moto with its IAM checks on (`INITIAL_NO_AUTH_ACTION_COUNT=0`
//! makes moto's server authenticate every request), where keys it never issued are refused,
//! so `hoist serve --storage` must stop at start-up and say why.
//!
//! Locally these skip when moto is not installed; on CI (`CI=true`) that is a failure.

use std::process::Command;

use crate::bucket_interop::{Moto, moto_server};
use crate::support::{free_addr, hoist_binary};

#[test]
fn moto_hoist_serve_refuses_to_start_when_the_credentials_are_refused() {
    let Some(program) = moto_server() else { return };
    let mut command = Command::new(&program);
    command.env("INITIAL_NO_AUTH_ACTION_COUNT", "0");
    let moto = Moto::spawn(command, &program);
    let output = Command::new(hoist_binary())
        .args([
            "serve",
            "--storage",
            "s3://registry/x",
            "--addr",
            &free_addr().to_string(),
        ])
        .envs(moto.env())
        .env_remove("AWS_CA_BUNDLE")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "hoist serve started with refused credentials"
    );
    assert!(stderr.contains("the credentials were refused"), "{stderr}");
}
