//! Every operation a WebSocket starts is authorised with the state of that moment: the
//! credentials the socket presented in `connection_init` are checked again, exactly as an HTTP
//! request's are, so a token, key, user or tenant that ended since no longer acts. A refusal
//! also ends the socket (see [`SocketCredentials::on_refused`]).

use std::{net::IpAddr, sync::Arc};

use async_graphql::{ErrorExtensions, Request, ServerError, ServerResult};

use crate::{
    auth::{self, RequestContext, StoredCredentials},
    error::AppError,
    state::SharedState,
};

/// What a socket keeps to authorise each of its operations anew.
#[derive(Clone)]
pub struct SocketCredentials {
    pub stored: StoredCredentials,
    pub client_addr: IpAddr,
    pub user_agent: Option<String>,
    /// Called when the credentials no longer hold: the socket closes.
    pub on_refused: Arc<dyn Fn() + Send + Sync>,
}

/// Authorises one operation of a socket as the socket's credentials stand now, and gives it
/// the request context they yield.
pub(super) async fn authorize(
    state: &SharedState,
    socket: &SocketCredentials,
    request: &mut Request,
) -> ServerResult<()> {
    match auth::reauthenticate(state, &socket.stored).await {
        Ok(principal) => {
            // Over the rate, this operation is refused; the socket stays open.
            state
                .rate_limits
                .admit(&state.metrics, &principal, 1)
                .map_err(request_error)?;
            request.data.insert(RequestContext {
                principal,
                client_addr: Some(socket.client_addr),
                user_agent: socket.user_agent.clone(),
            });
            Ok(())
        }
        Err(err) => {
            (socket.on_refused)();
            Err(request_error(err))
        }
    }
}

/// An error about the request as a whole, with its contract code.
pub fn request_error(err: AppError) -> ServerError {
    let extended = err.extend();
    let mut error = ServerError::new(extended.message, None);
    error.extensions = extended.extensions;
    error
}
