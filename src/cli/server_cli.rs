//! `servers …`: the database servers tenants are placed on, at a terminal.

use crate::{
    audit::Actor,
    error::AppError,
    state::SharedState,
    tenancy::servers::{self, ServerDraft, ServerState},
};

use super::ServersAction;

pub async fn run(state: &SharedState, action: ServersAction) -> anyhow::Result<()> {
    match action {
        ServersAction::List => {
            println!(
                "{:<24} {:<9} {:>9} {:>8}",
                "NAME", "STATE", "CAPACITY", "TENANTS"
            );
            for server in servers::list(&state.db).await.map_err(fault)? {
                println!(
                    "{:<24} {:<9} {:>9} {:>8}",
                    server.name,
                    server.state.as_db(),
                    server
                        .capacity
                        .map_or_else(|| "-".to_owned(), |capacity| capacity.to_string()),
                    server.tenants
                );
            }
        }
        ServersAction::Add {
            name,
            url,
            capacity,
        } => {
            let draft = ServerDraft {
                name,
                url,
                capacity,
            };
            let added = servers::add(state, &Actor::system(), &draft)
                .await
                .map_err(|faults| {
                    anyhow::anyhow!(
                        faults
                            .iter()
                            .map(|fault| fault.client_message().0)
                            .collect::<Vec<_>>()
                            .join("; ")
                    )
                })?;
            println!("added database server {}", added.name);
        }
        ServersAction::Drain { name } => {
            let drained = servers::set_state(state, &Actor::system(), &name, ServerState::Draining)
                .await
                .map_err(fault)?;
            println!(
                "database server {} is {}: no new tenants go there",
                drained.name,
                drained.state.as_db()
            );
        }
    }
    Ok(())
}

fn fault(err: AppError) -> anyhow::Error {
    anyhow::anyhow!(err.client_message().0)
}
