//! The bank workload: one global bank object; the setup opens a fixed set of accounts with
//! known balances, then instances in every region move random amounts between random
//! accounts (many overdraw and must be refused by the method's own result) and read the total
//! and balances. Money is neither made nor lost: every read of the total, on every replica,
//! equals the sum of the opened balances.
//!
//! [`BankWorkload`] is generic over the bank's type through [`BankObject`], which names the
//! methods the workload calls (ids and argument encodings are part of the log format) and the
//! getters it reads.

use std::marker::PhantomData;

use dsss::{Codec, MethodError, Postcard, SharedObject};
use serde::Serialize;

use super::ObjectWorkload;
use super::history::CallSpec;
use crate::random::SimRng;

/// The most accounts a bank workload opens.
pub const ACCOUNTS_MAX: usize = 1_000;

/// The method id of `open_account(name: String, balance: u64)`.
pub const OPEN_ACCOUNT_METHOD_ID: u32 = 1;

/// The method id of `transfer(from: String, to: String, amount: u64)`.
pub const TRANSFER_METHOD_ID: u32 = 2;

/// A bank as the workload sees it: its getters, and how its methods' results say "refused".
/// Both mutating methods take their arguments as one postcard-encoded tuple, in declaration
/// order.
pub trait BankObject: SharedObject {
    /// The balance of `account`, if it is open.
    fn balance(&self, account: &str) -> Option<u64>;

    /// The sum of every balance.
    fn total(&self) -> u64;

    /// Whether the encoded result of `open_account` or `transfer` is an error of the bank's
    /// own (an overdraft, an unknown account).
    fn is_refused(method_id: u32, result: &[u8]) -> bool;
}

/// What a bank read asks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BankRead {
    /// `total()`.
    Total,
    /// `balance(account)`.
    Balance(String),
}

/// What a bank read returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BankValue {
    /// The total.
    Total(u64),
    /// The balance, if the account is open.
    Balance(Option<u64>),
}

/// The bank workload over a bank of type `B`. See the module documentation.
#[derive(Clone, Debug)]
pub struct BankWorkload<B> {
    object_id: String,
    accounts: Vec<(String, u64)>,
    total: u64,
    amount_max: u64,
    bank: PhantomData<fn() -> B>,
}

impl<B: BankObject> BankWorkload<B> {
    /// A bank named `object_id` whose setup opens `account_count` accounts (at most
    /// [`ACCOUNTS_MAX`]) with balances 100, 110, 120 and so on; transfers move 1 to
    /// `amount_max` units.
    pub fn new(object_id: &str, account_count: usize, amount_max: u64) -> Result<Self, String> {
        if !(2..=ACCOUNTS_MAX).contains(&account_count) {
            return Err(format!(
                "account_count {account_count} is outside 2..={ACCOUNTS_MAX}"
            ));
        }
        if amount_max == 0 {
            return Err("amount_max is zero".to_string());
        }
        let accounts: Vec<(String, u64)> = (0..account_count)
            .map(|index| (format!("account-{index}"), 100 + 10 * index as u64))
            .collect();
        let total = accounts.iter().map(|(_, balance)| balance).sum();
        Ok(BankWorkload {
            object_id: object_id.to_string(),
            accounts,
            total,
            amount_max,
            bank: PhantomData,
        })
    }

    /// The accounts the setup opens, with their balances.
    pub fn accounts(&self) -> &[(String, u64)] {
        &self.accounts
    }

    /// The sum of the opened balances.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The call `open_account(name, balance)`.
    pub fn open_account(name: &str, balance: u64) -> CallSpec {
        CallSpec {
            method_id: OPEN_ACCOUNT_METHOD_ID,
            arguments: encode(&(name, balance)),
        }
    }

    /// The call `transfer(from, to, amount)`.
    pub fn transfer(from: &str, to: &str, amount: u64) -> CallSpec {
        CallSpec {
            method_id: TRANSFER_METHOD_ID,
            arguments: encode(&(from, to, amount)),
        }
    }
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    Postcard::encode(value).expect("strings and integers always encode")
}

impl<B: BankObject> ObjectWorkload for BankWorkload<B> {
    type Object = B;
    type Read = BankRead;
    type Value = BankValue;

    fn object_id(&self) -> &str {
        &self.object_id
    }

    fn setup_calls(&self) -> Vec<CallSpec> {
        self.accounts
            .iter()
            .map(|(name, balance)| Self::open_account(name, *balance))
            .collect()
    }

    fn is_set_up(&self, object: &B) -> bool {
        self.accounts
            .iter()
            .all(|(name, _)| object.balance(name).is_some())
    }

    fn random_call(&self, rng: &mut SimRng) -> CallSpec {
        let count = self.accounts.len() as u64;
        let from = rng.below(count);
        // A different account: one of the others, uniformly.
        let to = (from + 1 + rng.below(count - 1)) % count;
        let amount = rng.range_inclusive(1, self.amount_max);
        Self::transfer(
            &self.accounts[from as usize].0,
            &self.accounts[to as usize].0,
            amount,
        )
    }

    fn random_read(&self, rng: &mut SimRng) -> BankRead {
        if rng.chance(0.5) {
            BankRead::Total
        } else {
            let (name, _) = rng.choose(&self.accounts).expect("accounts exist");
            BankRead::Balance(name.clone())
        }
    }

    fn read(&self, object: &B, read: &BankRead) -> BankValue {
        match read {
            BankRead::Total => BankValue::Total(object.total()),
            BankRead::Balance(name) => BankValue::Balance(object.balance(name)),
        }
    }

    fn check_read(&self, read: &BankRead, value: &BankValue) -> Result<(), String> {
        match (read, value) {
            (BankRead::Total, BankValue::Total(total)) if *total == self.total => Ok(()),
            (BankRead::Total, BankValue::Total(total)) => Err(format!(
                "the total is {total}, the accounts were opened with {}",
                self.total
            )),
            (BankRead::Balance(_), BankValue::Balance(Some(balance))) if *balance <= self.total => {
                Ok(())
            }
            (BankRead::Balance(name), BankValue::Balance(balance)) => Err(format!(
                "account {name} holds {balance:?}, but it is open and all accounts hold {}",
                self.total
            )),
            (read, value) => Err(format!("{read:?} returned a {value:?}")),
        }
    }

    fn is_refusal(&self, call: &CallSpec, outcome: &Result<Vec<u8>, MethodError>) -> bool {
        match outcome {
            Ok(result) => B::is_refused(call.method_id, result),
            Err(_) => false,
        }
    }
}

impl BankObject for dsss_examples::Bank {
    fn balance(&self, account: &str) -> Option<u64> {
        dsss_examples::Bank::balance(self, account)
    }

    fn total(&self) -> u64 {
        dsss_examples::Bank::total(self)
    }

    fn is_refused(_method_id: u32, result: &[u8]) -> bool {
        // Both methods return `Result<(), BankError>`.
        matches!(
            Postcard::decode::<Result<(), dsss_examples::BankError>>(result),
            Ok(Err(_))
        )
    }
}

/// The object name of the bank in `dsss sim bank` runs.
pub const BANK_OBJECT_ID: &str = "sim/bank";

/// The accounts a standard bank run opens.
pub const BANK_ACCOUNT_COUNT: usize = 8;

/// The largest transfer of a standard bank run: above most balances, so that many transfers
/// overdraw and must be refused by the bank itself.
pub const BANK_AMOUNT_MAX: u64 = 150;

/// The bank workload over `dsss_examples::Bank` with `account_count` accounts.
pub fn bank_workload(account_count: usize) -> Result<BankWorkload<dsss_examples::Bank>, String> {
    BankWorkload::new(BANK_OBJECT_ID, account_count, BANK_AMOUNT_MAX)
}
