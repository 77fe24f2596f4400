//! Operator commands: the one path by which the dashboard and the admin API change the balancer.

use super::state::State;
use tokio::time::Instant;

/// An operator command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Sets a run-time weight: for one rule when `rule` is given, else for the provider in every
    /// rule that has no rule-level override. Setting the weight the provider would have without
    /// the override removes the override.
    SetWeight { provider: String, rule: Option<String>, weight: u32 },
    /// Takes a provider out of rotation (forced failover); requests in flight finish.
    Drain(String),
    /// Puts a drained provider back.
    Undrain(String),
    /// Closes the breaker and clears the failure window, a 429 cooldown and a quota exclusion.
    ResetBreaker(String),
    /// Runs the provider's health check now (wakes the health loop; if a probe of that provider
    /// is already running, its result serves).
    CheckNow(String),
    /// Asks the account's `getUsageLimits` now (wakes the usage poller).
    CheckUsage(String),
}

/// Why a command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// No provider has this id.
    #[error("unknown provider {0:?}")]
    UnknownProvider(String),
    /// No rule has this category.
    #[error("unknown rule {0:?}")]
    UnknownRule(String),
    /// The provider is not one the rule can pick.
    #[error("provider {provider:?} is not in rule {rule:?}")]
    NotInRule { provider: String, rule: String },
    /// The weight would leave a rule with every weight 0 (the config validator refuses the same).
    #[error("weight 0 would leave rule {rule:?} with every weight 0: nothing could be picked")]
    AllZero { rule: String },
    /// `CheckNow` for a provider without active health checks.
    #[error("provider {0:?} has no health check configured")]
    NoHealthCheck(String),
    /// `CheckUsage` for a provider with `usage.enabled: false`.
    #[error("provider {0:?} has usage checks turned off (usage.enabled: false)")]
    NoUsageCheck(String),
}

/// What the balancer must do after a command besides bumping the change counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Effect {
    /// Nothing more.
    None,
    /// A provider may have become eligible: wake queued selections.
    WakeWaiters,
    /// Wake the health loop.
    WakeHealth,
    /// Wake the usage poller.
    WakeUsage,
}

impl State {
    /// Refuse weight 0 for `provider` (in `rule`, or in every rule without a rule override) when
    /// a rule would be left with every weight 0.
    fn refuse_all_zero(&self, provider: &str, only: Option<&str>) -> Result<(), CommandError> {
        for r in &self.rules {
            if !r.candidates.iter().any(|c| c == provider) || only.is_some_and(|o| o != r.spec.category) {
                continue;
            }
            let total: u64 = r
                .candidates
                .iter()
                .filter_map(|id| self.provider(id))
                .map(|p| {
                    let changed =
                        p.spec.id == provider && (only.is_some() || !r.overrides.contains_key(&p.spec.id));
                    if changed { 0 } else { u64::from(r.weight(p)) }
                })
                .sum();
            if total == 0 {
                return Err(CommandError::AllZero { rule: r.spec.category.clone() });
            }
        }
        Ok(())
    }

    /// Applies a command, returning a one-line description of what changed.
    pub(crate) fn apply(&mut self, cmd: Command, now: Instant) -> Result<(String, Effect), CommandError> {
        if let Command::SetWeight { provider, rule, weight: 0 } = &cmd {
            self.refuse_all_zero(provider, rule.as_deref())?;
        }
        match cmd {
            Command::SetWeight { provider, rule: None, weight } => {
                let p = self
                    .provider_mut(&provider)
                    .ok_or_else(|| CommandError::UnknownProvider(provider.clone()))?;
                let before = p.base_weight();
                p.weight_override = (weight != p.spec.weight).then_some(weight);
                Ok((format!("{provider}: weight {before} -> {weight} (all rules)"), Effect::None))
            }
            Command::SetWeight { provider, rule: Some(rule), weight } => {
                let ri =
                    *self.rule_index.get(&rule).ok_or_else(|| CommandError::UnknownRule(rule.clone()))?;
                let pi = *self
                    .provider_index
                    .get(&provider)
                    .ok_or_else(|| CommandError::UnknownProvider(provider.clone()))?;
                let (Some(r), Some(p)) = (self.rules.get_mut(ri), self.providers.get(pi)) else {
                    return Err(CommandError::UnknownProvider(provider));
                };
                if !r.candidates.contains(&provider) {
                    return Err(CommandError::NotInRule { provider, rule });
                }
                let before = r.weight(p);
                if weight == r.base_weight(p) {
                    r.overrides.remove(&provider);
                } else {
                    r.overrides.insert(provider.clone(), weight);
                }
                Ok((format!("{provider}: weight {before} -> {weight} (rule {rule})"), Effect::None))
            }
            Command::Drain(provider) => {
                let p = self
                    .provider_mut(&provider)
                    .ok_or_else(|| CommandError::UnknownProvider(provider.clone()))?;
                let was = std::mem::replace(&mut p.drained, true);
                tracing::info!(provider = %provider, "drained by operator");
                let msg = if was { "already drained" } else { "drained: new requests fail over" };
                Ok((format!("{provider}: {msg}"), Effect::None))
            }
            Command::Undrain(provider) => {
                let p = self
                    .provider_mut(&provider)
                    .ok_or_else(|| CommandError::UnknownProvider(provider.clone()))?;
                let was = std::mem::replace(&mut p.drained, false);
                tracing::info!(provider = %provider, "undrained by operator");
                let msg = if was { "back in rotation" } else { "was not drained" };
                Ok((format!("{provider}: {msg}"), Effect::WakeWaiters))
            }
            Command::ResetBreaker(provider) => {
                let p = self
                    .provider_mut(&provider)
                    .ok_or_else(|| CommandError::UnknownProvider(provider.clone()))?;
                let mut cleared = Vec::new();
                if let Some(b) = p.breaker.as_mut() {
                    let state = b.state(now);
                    b.reset();
                    cleared.push(format!("breaker {} -> CLOSED", state.as_str()));
                }
                if p.cooldown_until.take().is_some_and(|t| t > now) {
                    cleared.push("cooldown cleared".to_owned());
                }
                if p.quota_until.take().is_some_and(|t| t > now) {
                    cleared.push("quota exclusion cleared".to_owned());
                }
                if p.account.suspended.take().is_some() {
                    cleared.push("suspension cleared".to_owned());
                }
                if p.account.needs_login.take().is_some() {
                    cleared.push("login state cleared".to_owned());
                }
                if cleared.is_empty() {
                    cleared.push("no breaker configured, nothing to clear".to_owned());
                }
                tracing::info!(provider = %provider, "breaker reset by operator");
                Ok((format!("{provider}: {}", cleared.join(", ")), Effect::WakeWaiters))
            }
            Command::CheckNow(provider) => {
                let p = self
                    .provider(&provider)
                    .ok_or_else(|| CommandError::UnknownProvider(provider.clone()))?;
                if p.spec.health.is_none() {
                    return Err(CommandError::NoHealthCheck(provider));
                }
                self.check_now.insert(provider.clone());
                if let Some(p) = self.provider_mut(&provider) {
                    p.health.next_check = Some(now);
                }
                Ok((format!("{provider}: health check requested"), Effect::WakeHealth))
            }
            Command::CheckUsage(provider) => {
                let p = self
                    .provider(&provider)
                    .ok_or_else(|| CommandError::UnknownProvider(provider.clone()))?;
                if p.spec.usage.is_none() {
                    return Err(CommandError::NoUsageCheck(provider));
                }
                self.usage_check_now.insert(provider.clone());
                Ok((format!("{provider}: usage check requested"), Effect::WakeUsage))
            }
        }
    }
}
