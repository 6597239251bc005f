use clap::Parser;

fn main() {
    let cli = sprsc::cli::Cli::parse();
    std::process::exit(sprsc::cli::main_with(cli));
}
