//! [`Bank`]: one global object holding every account.
//!
//! Money enters only when an account is opened with its starting balance; a transfer moves
//! money between two accounts or fails as a whole. So the total of all balances always equals
//! the sum of the starting balances, in every copy, at every position.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Why a bank call was refused. The call took no effect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum BankError {
    /// An account with this name exists already.
    #[error("account {0} exists already")]
    AccountExists(String),
    /// No account has this name.
    #[error("no account {0}")]
    NoSuchAccount(String),
    /// The paying account holds less than the amount.
    #[error("account {account} holds {balance}, less than {amount}")]
    InsufficientFunds {
        /// The paying account.
        account: String,
        /// Its balance.
        balance: u64,
        /// The amount asked for.
        amount: u64,
    },
    /// A transfer from an account to itself.
    #[error("a transfer from {0} to itself")]
    SameAccount(String),
}

/// Accounts and their balances, shared by every region.
#[dsss::shared_object]
#[derive(Default, Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bank {
    accounts: BTreeMap<String, u64>,
}

#[dsss::methods]
impl Bank {
    /// Opens `name` with a starting `balance`: the only way money enters the bank.
    #[mutate(id = 1)]
    pub fn open_account(&mut self, name: String, balance: u64) -> Result<(), BankError> {
        if self.accounts.contains_key(&name) {
            return Err(BankError::AccountExists(name));
        }
        self.accounts.insert(name, balance);
        Ok(())
    }

    /// Moves `amount` from `from` to `to`, or nothing at all.
    #[mutate(id = 2)]
    pub fn transfer(&mut self, from: String, to: String, amount: u64) -> Result<(), BankError> {
        if from == to {
            return Err(BankError::SameAccount(from));
        }
        let balance = *self
            .accounts
            .get(&from)
            .ok_or_else(|| BankError::NoSuchAccount(from.clone()))?;
        if !self.accounts.contains_key(&to) {
            return Err(BankError::NoSuchAccount(to));
        }
        if balance < amount {
            return Err(BankError::InsufficientFunds {
                account: from,
                balance,
                amount,
            });
        }
        self.accounts.insert(from, balance - amount);
        *self.accounts.get_mut(&to).expect("checked above") += amount;
        Ok(())
    }

    /// The balance of `name`.
    pub fn balance(&self, name: &str) -> Option<u64> {
        self.accounts.get(name).copied()
    }

    /// The sum of all balances.
    pub fn total(&self) -> u64 {
        self.accounts.values().sum()
    }

    /// The accounts and their balances, in name order.
    pub fn accounts(&self) -> &BTreeMap<String, u64> {
        &self.accounts
    }
}
