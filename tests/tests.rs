//! labpipe's integration tests, built as one test binary (see `[[test]]` in Cargo.toml): every module below
//! was once its own binary, and linking the library and Candle into each of them dominated the test build.
//! `util` holds what they share.

mod util;

mod bench_script;
mod cache_clean;
mod cache_concurrency;
mod cache_damage;
mod cache_keys;
mod cache_resume;
mod cifar10_download;
mod clean_safety;
mod cli;
mod code_identity;
mod datasets_cifar100;
mod datasets_image_folder;
mod datasets_mnist;
mod datasets_short_files;
mod device_selection;
mod eval_batch_size;
mod init;
mod json_output;
mod manifest_integrity;
mod messages;
mod report;
mod report_classes;
mod report_states;
mod results_table;
mod resume_damage;
mod run_selection;
mod scale;
mod schema;
mod schema_cli;
mod slurm_cluster;
mod state_dict_parity;
mod status_device;
mod summary_seed;
mod sweep;
mod sweep_order;
mod train_parity;
mod training;
