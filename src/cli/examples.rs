//! The examples at the end of each command's `--help` (clap `after_help`), kept apart from the definitions so
//! that the flags stay readable.

/// `labpipe run`.
pub const RUN: &str = "Examples:
  labpipe run pipelines/quickstart.yaml
  labpipe run pipelines/task2.yaml --only 'lr*' -S train.epochs=5
  labpipe run pipelines/task2.yaml --jobs 2 --device cuda:all";

/// `labpipe plan`.
pub const PLAN: &str = "Examples:
  labpipe plan pipelines/quickstart.yaml
  labpipe plan pipelines/task2.yaml -S train.batch_size=128";

/// `labpipe summary`.
pub const SUMMARY: &str = "Examples:
  labpipe summary pipelines/task1.yaml
  labpipe summary pipelines/task2.yaml --run baseline --json";

/// `labpipe status`.
pub const STATUS: &str = "Examples:
  labpipe status
  labpipe status pipelines/task2.yaml --only 'lr*'
  labpipe status --json";

/// `labpipe report`.
pub const REPORT: &str = "Examples:
  labpipe report > report.md
  labpipe report pipelines/quickstart.yaml --to report/
  labpipe report --format html --to site/";

/// `labpipe eval`.
pub const EVAL: &str = "Examples:
  labpipe eval pipelines/quickstart.yaml
  labpipe eval pipelines/task2.yaml --run no_augmentation --json";

/// `labpipe bench`.
pub const BENCH: &str = "Examples:
  labpipe bench
  labpipe bench --model resnet18
  labpipe bench --model pipelines/quickstart.yaml";

/// `labpipe clean`.
pub const CLEAN: &str = "Examples:
  labpipe clean --dry-run
  labpipe clean pipelines/task1.yaml pipelines/task2.yaml
  labpipe clean --all";

/// `labpipe schema`.
pub const SCHEMA: &str = "Examples:
  labpipe schema > labpipe.schema.json
  labpipe schema --markdown > docs/pipeline-reference.md
Then put `# yaml-language-server: $schema=labpipe.schema.json` on a pipeline's first line for VS Code.";

/// `labpipe init`.
pub const INIT: &str = "Examples:
  labpipe init
  labpipe init mnist-lab --dataset mnist --model lenet5
  labpipe init lab --dataset cifar10 --model resnet18 --templates";

/// `labpipe completions`.
pub const COMPLETIONS: &str = "Examples:
  labpipe completions bash > ~/.local/share/bash-completion/completions/labpipe
  labpipe completions zsh > ~/.zfunc/_labpipe
  labpipe completions fish > ~/.config/fish/completions/labpipe.fish";
