//! Publisher contract and connectors.
