//! Every operation a WebSocket starts is authorised with the state of that moment: the
//! credentials the socket presented in `connection_init` are checked again, exactly as an HTTP
//! request's are, so a token, key, user or tenant that ended since no longer acts. A refusal
//! also ends the socket (see [`SocketCredentials::on_refused`]).

use std::{net::IpAddr, sync::Arc};

use async_graphql::{
    ErrorExtensions, Request, ServerError, ServerResult,
    extensions::{Extension, ExtensionContext, ExtensionFactory, NextPrepareRequest},
};

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

pub struct Reauthorize(pub SharedState);

impl ExtensionFactory for Reauthorize {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(Reauthorize(self.0.clone()))
    }
}

#[async_trait::async_trait]
impl Extension for Reauthorize {
    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        mut request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        if let Some(socket) = ctx.data_opt::<SocketCredentials>() {
            match auth::reauthenticate(&self.0, &socket.stored).await {
                Ok(principal) => {
                    // Over the rate, this operation is refused; the socket stays open.
                    self.0
                        .rate_limits
                        .admit(&self.0.metrics, &principal, 1)
                        .map_err(request_error)?;
                    request.data.insert(RequestContext {
                        principal,
                        client_addr: Some(socket.client_addr),
                        user_agent: socket.user_agent.clone(),
                    })
                }
                Err(err) => {
                    (socket.on_refused)();
                    return Err(request_error(err));
                }
            }
        }
        next.run(ctx, request).await
    }
}

/// An error about the request as a whole, with its contract code.
pub fn request_error(err: AppError) -> ServerError {
    let extended = err.extend();
    let mut error = ServerError::new(extended.message, None);
    error.extensions = extended.extensions;
    error
}
