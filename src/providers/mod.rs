//! Upstream providers. Only one kind exists today: Kiro / AWS CodeWhisperer accounts.

pub mod codewhisperer;
