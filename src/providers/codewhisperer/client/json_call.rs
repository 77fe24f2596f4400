//! JSON calls to the account's Q service besides the chat: the MCP endpoint (web search) and
//! `ListAvailableModels`. Same bearer token, IDE headers and one-refresh-on-rejection rule as the
//! chat call; the whole call (answer included) must finish within the provider's first-byte timeout.

use super::super::token::Credential;
use super::{
    CodeWhispererClient, UpstreamError, UpstreamErrorKind, classify_status, is_bearer_invalid, retry_after,
    transport_error,
};
use std::time::Instant;

/// One JSON request to the account's Q service.
#[derive(Debug, Clone, Copy)]
pub enum JsonCall<'a> {
    /// `GET {base}{path}?{query}` (the query gets `profileArn` when the account has one).
    Get { path: &'a str, query: &'a [(&'a str, &'a str)] },
    /// `POST {base}{path}` with a JSON body.
    Post { path: &'a str, body: &'a [u8] },
}

impl CodeWhispererClient {
    /// Run one JSON call and return the 2xx body. Non-2xx answers are classified like chat
    /// answers ([`classify_status`]); a "bearer token invalid" answer refreshes the token once.
    pub async fn call_json(&self, call: JsonCall<'_>) -> Result<String, UpstreamError> {
        let started = Instant::now();
        let work = async {
            let credential = self.tokens.credential().await.map_err(|e| UpstreamError::from_token(&e))?;
            let (status, body, after) = self.json_once(call, &credential).await?;
            if (200..300).contains(&status) {
                return Ok(body);
            }
            if is_bearer_invalid(status, &body) {
                let fresh = self
                    .tokens
                    .refresh_after_rejection(&credential.access_token)
                    .await
                    .map_err(|e| UpstreamError::from_token(&e))?;
                let (status, body, after) = self.json_once(call, &fresh).await?;
                if (200..300).contains(&status) {
                    return Ok(body);
                }
                return Err(classify_status(status, &body, after));
            }
            Err(classify_status(status, &body, after))
        };
        match tokio::time::timeout(self.first_byte_timeout, work).await {
            Ok(result) => result,
            Err(_) => Err(UpstreamError::new(
                UpstreamErrorKind::Timeout,
                format!("no answer within {} ms", started.elapsed().as_millis()),
            )),
        }
    }

    async fn json_once(
        &self,
        call: JsonCall<'_>,
        credential: &Credential,
    ) -> Result<(u16, String, Option<std::time::Duration>), UpstreamError> {
        let arn = credential.profile_arn.as_deref().filter(|a| !a.is_empty());
        let request = match call {
            JsonCall::Get { path, query } => {
                let mut query = query.to_vec();
                if let Some(arn) = arn {
                    query.push(("profileArn", arn));
                }
                self.decorate(self.http.get(format!("{}{path}", self.api_base)), credential)
                    .header("accept", "application/json")
                    .query(&query)
            }
            JsonCall::Post { path, body } => self
                .decorate(self.http.post(format!("{}{path}", self.api_base)), credential)
                .header("content-type", "application/json")
                .header("accept", "application/json")
                .body(body.to_vec()),
        };
        let request = match arn {
            Some(arn) => request.header("x-amzn-kiro-profile-arn", arn),
            None => request,
        };
        let response = request.send().await.map_err(|e| transport_error(&e))?;
        let status = response.status().as_u16();
        let after = retry_after(response.headers());
        let body = response.text().await.map_err(|e| transport_error(&e))?;
        Ok((status, body, after))
    }
}
