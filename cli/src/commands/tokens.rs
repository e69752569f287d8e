//! `poet token`: issue, list and revoke per-identity tokens. An admin command: it talks to
//! Postgres directly (like `poet ingest`), so only someone with the database's credentials
//! can mint a credential for the coordinator.

use poet_coordinator::auth::{self, Role, TokenError};

use crate::args::{Cli, TokenCmd, exit};
use crate::commands::db::database_url;
use crate::conn::{CliError, CliResult};
use crate::output::{self, Table, out, outln};

fn token_error(e: TokenError) -> CliError {
    let code = match &e {
        TokenError::BadName(_) | TokenError::Exists(_) => exit::BAD_INPUT,
        TokenError::NotFound(_) => exit::NOT_FOUND,
        TokenError::Db(_) => exit::UNAVAILABLE,
    };
    CliError::new(code, e.to_string())
}

fn when(t: Option<chrono::DateTime<chrono::Utc>>) -> String {
    t.map_or_else(|| "-".into(), |t| t.format("%Y-%m-%d %H:%M").to_string())
}

pub async fn token(cli: &Cli, cmd: &TokenCmd) -> CliResult {
    let url = database_url(None).await?;
    let pool = poet_sql::connect(&url)
        .await
        .map_err(|e| CliError::new(exit::UNAVAILABLE, e.to_string()))?;
    match cmd {
        TokenCmd::Create { role, name } => {
            let role = Role::parse(role).expect("clap checked the role");
            let (token, info) = auth::issue_token(&pool, role, name)
                .await
                .map_err(token_error)?;
            if cli.json {
                output::json(&serde_json::json!({"token": token, "info": info}));
            } else {
                outln!("{token}");
                eprintln!(
                    "issued {} token {:?} (id {}): store it now, it is not shown again; revoke with `poet token revoke {}`",
                    info.role, info.name, info.id, info.name
                );
            }
        }
        TokenCmd::List => {
            let list = auth::list_tokens(&pool).await.map_err(token_error)?;
            if cli.json {
                output::json(&list);
            } else {
                let mut t = Table::new(&[
                    "id",
                    "name",
                    "role",
                    "created",
                    "by",
                    "last used",
                    "revoked",
                ]);
                for i in list {
                    t.row(vec![
                        i.id.to_string(),
                        i.name,
                        i.role,
                        when(Some(i.created_at)),
                        i.created_by,
                        when(i.last_used_at),
                        when(i.revoked_at),
                    ]);
                }
                out!("{}", t.render());
            }
        }
        TokenCmd::Revoke { name } => {
            let info = auth::revoke_token(&pool, name).await.map_err(token_error)?;
            if cli.json {
                output::json(&info);
            } else {
                outln!(
                    "revoked {} token {:?} (id {})",
                    info.role,
                    info.name,
                    info.id
                );
            }
        }
    }
    Ok(())
}
