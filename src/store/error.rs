//! What can go wrong with the store.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store {path}: {source}")]
    Open {
        path: PathBuf,
        source: Box<redb::DatabaseError>,
    },
    #[error("store: {0}")]
    Db(Box<redb::Error>),
    #[error("store: damaged record: {0}")]
    Damaged(String),
    #[error("store {path} is damaged: redb {panic}")]
    Unreadable { path: PathBuf, panic: String },
    #[error("site `{0}` has no older version to roll back to")]
    NoOlderVersion(String),
    #[error("site `{0}` is not in the store")]
    UnknownSite(String),
    #[error("the store is closed")]
    Closed,
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Db(Box::new(e.into()))
            }
        }
    )*};
}
from_redb!(
    redb::Error,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);
