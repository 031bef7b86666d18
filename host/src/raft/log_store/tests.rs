//! Tests of the redb log store.
