//! `hoist login` and `hoist logout`: credentials in docker's `config.json`, written as
//! `docker login` writes them (by [`DockerConfig`]), so that docker, skopeo, crane and hoist
//! all use them.

use std::io::Read;

use anyhow::{Context, Result};
use oci_registry::{Credentials, DockerConfig};
use oci_store::ErrorCode;

use crate::cli::{LoginArgs, LogoutArgs};
use crate::commands::Ctx;
use crate::exit::{Failed, Failure};
use crate::location::{Location, registry_host};

pub(crate) async fn login(ctx: &Ctx, args: LoginArgs) -> Result<()> {
    let host = checked_host(&args.registry)?;
    let password = match (args.password, args.password_stdin) {
        (Some(password), false) => password,
        (None, true) => read_password_from_stdin()?,
        _ => {
            return Err(Failed::new(
                Failure::Usage,
                "give the password with --password-stdin (or -p PASSWORD)",
            )
            .into());
        }
    };
    if password.is_empty() {
        return Err(Failed::new(Failure::Usage, "the password is empty").into());
    }
    verify(ctx, &host, &args.username, &password).await?;
    let mut config = DockerConfig::load(DockerConfig::default_path()?)?;
    config.store_basic(&host, &args.username, &password)?;
    config.save()?;
    let path = config.path().display();
    ctx.say(format!(
        "logged in to {host} as {}; credentials stored in {path}",
        args.username,
    ));
    if let Some(helper) = config.credential_helper_for(&host) {
        ctx.say(format!(
            "warning: {path} names the credential helper {helper:?} for {host}: docker asks it, not the stored entry",
        ));
    }
    Ok(())
}

pub(crate) async fn logout(ctx: &Ctx, args: LogoutArgs) -> Result<()> {
    let host = checked_host(&args.registry)?;
    let mut config = DockerConfig::load(DockerConfig::default_path()?)?;
    let path = config.path().display().to_string();
    if config.remove(&host) {
        config.save()?;
        ctx.say(format!("removed the credentials of {host} from {path}"));
    } else {
        ctx.say(format!("not logged in to {host} (in {path})"));
    }
    Ok(())
}

/// `host[:port]` of what the user typed (URLs and docker's Docker Hub key included), checked.
fn checked_host(input: &str) -> Result<String> {
    Location::parse_registry(input)
        .map_err(|e| Failed::new(Failure::Usage, format!("invalid registry {e}")))?;
    Ok(registry_host(input).to_owned())
}

/// The password from stdin, without the final newline (as `docker login --password-stdin`).
fn read_password_from_stdin() -> Result<String> {
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .context("cannot read the password from stdin")?;
    let text = text.strip_suffix('\n').unwrap_or(&text);
    let text = text.strip_suffix('\r').unwrap_or(text);
    Ok(text.to_owned())
}

/// Checks the credentials against the registry before they are stored, as `docker login`
/// does: `GET /v2/` with them, through the registry's token endpoint where it has one (which
/// is where a token registry checks credentials).
async fn verify(ctx: &Ctx, host: &str, username: &str, password: &str) -> Result<()> {
    let client = ctx
        .opener
        .client_builder(host)
        .with_credentials(Credentials::Basic {
            username: username.to_owned(),
            password: password.to_owned(),
        })
        .build()
        .await
        .with_context(|| format!("cannot set up a client of registry {host}"))?;
    match client.check_credentials().await {
        Ok(()) => Ok(()),
        Err(error)
            if matches!(
                error.code(),
                Some(ErrorCode::Unauthorized | ErrorCode::Denied)
            ) =>
        {
            Err(anyhow::Error::new(error)
                .context(format!("{host} refused the credentials of {username}")))
        }
        Err(error) => Err(anyhow::Error::new(error).context(format!(
            "cannot check the credentials of {username} with {host}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_read_from_what_people_paste() {
        assert_eq!(
            checked_host("https://index.docker.io/v1/").unwrap(),
            "index.docker.io"
        );
        assert_eq!(checked_host("localhost:5000").unwrap(), "localhost:5000");
        assert!(checked_host("not a host").is_err());
    }
}
