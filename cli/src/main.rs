//! `hsmkit`: the nShield tools of the BYOK ceremony, on the emulated module.
//!
//! Subcommands carry the names and arguments of the tools in the ceremony, so its commands run
//! with `hsmkit` in front: `new-world`, `nkminfo`, `generatekey`, `cngimport`, `aclprint` (and
//! `preload … aclprint.py`), `kmfile-dump`.

mod aadrm;
mod backends;
mod bench;
mod ceremony;
mod commands;
mod conform;
mod env;
mod pins;
mod quorum;
mod show;
mod tenant;
mod transfer;
mod vendor;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Options every subcommand takes.
#[derive(Debug, Clone, clap::Args)]
pub struct Global {
    /// The kmdata folder (else `NFAST_KMDATA`, else a per-user default).
    #[arg(long, global = true, value_name = "DIR")]
    pub kmdata: Option<std::path::PathBuf>,
    /// Where Administrator card files go (default: `cards/` beside kmdata).
    #[arg(long, global = true, value_name = "DIR")]
    pub cards: Option<std::path::PathBuf>,
    /// The module's NVRAM folder (default: `nvram/` beside kmdata).
    #[arg(long, global = true, value_name = "DIR")]
    pub nvram: Option<std::path::PathBuf>,
    /// PINs, one a line, card by card in order (else `HSMKIT_PIN_FILE`, else a hidden prompt).
    #[arg(long, global = true, value_name = "FILE")]
    pub pin_file: Option<std::path::PathBuf>,
    /// Seed the module's RNG and fix its clock: reproducible output, NOT for real keys.
    #[arg(long, global = true, value_name = "N")]
    pub seed: Option<u64>,
}

#[derive(Debug, Parser)]
#[command(name = "hsmkit", version, about = "An nShield-style HSM emulator and BYOK conformance kit")]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

// Parsed once per run: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Command {
    /// Create a security world with an Administrator Card Set (`new-world`).
    #[command(name = "new-world")]
    NewWorld(commands::NewWorldArgs),
    /// Show the world, the module and the keys (`nfkminfo`).
    #[command(name = "nkminfo", alias = "nfkminfo")]
    Nkminfo(commands::NkminfoArgs),
    /// Generate a key (`generatekey --generate APP key=value …`).
    #[command(name = "generatekey")]
    Generatekey(commands::GeneratekeyArgs),
    /// Import a key into the CNG key storage provider (`cngimport --import`).
    #[command(name = "cngimport")]
    Cngimport(commands::CngimportArgs),
    /// Print a key's ACL, loading it through the module (`aclprint.py`).
    #[command(name = "aclprint")]
    Aclprint(commands::AclprintArgs),
    /// Load a key and run a program on it: `preload -A APP -K IDENT … aclprint.py` prints its ACL.
    #[command(name = "preload")]
    Preload(commands::PreloadArgs),
    /// Change the module's mode (`nopclearfail -O|-I|-M`).
    #[command(name = "nopclearfail")]
    Nopclearfail(commands::NopclearfailArgs),
    /// The cloud provider's side, emulated (`vendor init --region NA --dir DIR`).
    #[command(name = "vendor", subcommand)]
    Vendor(VendorCommand),
    /// Validate the KEK and Security World packages (`verifykeypackage.py -k … -w …`).
    #[command(name = "verifykeypackage", alias = "verifykeypackage.py")]
    Verifykeypackage(vendor::VerifyArgs),
    /// The BYOK toolset's tool: `KeyTransferRemote -ModifyAcls …` (PowerShell-style arguments).
    #[command(name = "KeyTransferRemote", alias = "keytransferremote")]
    KeyTransferRemote(transfer::KeyTransferRemoteArgs),
    /// The transfer steps with conventional arguments.
    #[command(name = "transfer", subcommand)]
    Transfer(TransferCommand),
    /// The whole BYOK ceremony of the article, end to end, in a fresh folder, with no prompts.
    #[command(name = "ceremony")]
    Ceremony(ceremony::CeremonyArgs),
    /// The provider's service: the tenant's keys (`Add-AadrmKey`, `Get-AadrmKeys`).
    #[command(name = "tenant")]
    Tenant(tenant::TenantArgs),
    /// Run the conformance suite on a backend and print the report.
    #[command(name = "conform")]
    Conform(conform::ConformArgs),
    /// The article's `Connect-AadrmService`: saves which provider and tenant the next cmdlets use
    /// (`-Provider DIR -TenantBposId GUID`).
    #[command(name = "Connect-AadrmService", alias = "connect-aadrmservice")]
    ConnectAadrmService(aadrm::CmdletArgs),
    /// The article's `Get-AadrmConfiguration`: the connected tenant's BPOSId.
    #[command(name = "Get-AadrmConfiguration", alias = "get-aadrmconfiguration")]
    GetAadrmConfiguration(aadrm::CmdletArgs),
    /// The article's `Disconnect-AadrmService`.
    #[command(name = "Disconnect-AadrmService", alias = "disconnect-aadrmservice")]
    DisconnectAadrmService(aadrm::CmdletArgs),
    /// The article's `Get-AadrmKeys`: the connected tenant's keys.
    #[command(name = "Get-AadrmKeys", alias = "get-aadrmkeys")]
    GetAadrmKeys(aadrm::CmdletArgs),
    /// The article's `Add-AadrmKey –KeyFile FILE -Verbose` (`-Force`: no confirmation).
    #[command(name = "Add-AadrmKey", alias = "add-aadrmkey")]
    AddAadrmKey(aadrm::CmdletArgs),
    /// The security officer sets the token's user PIN (`C_InitPIN`): private keys then need the
    /// user's login.
    #[command(name = "init-pin")]
    InitPin(commands::InitPinArgs),
    /// Dump a key blob file without opening it (`kmfile-dump`).
    #[command(name = "kmfile-dump")]
    KmfileDump(commands::KmfileDumpArgs),
    /// Measure the wrap and sign paths on backends side by side, with the AWS-LC reference row.
    #[command(name = "bench")]
    Bench(bench::BenchArgs),
}

#[derive(Debug, Subcommand)]
enum TransferCommand {
    /// Narrow a key for transfer (`KeyTransferRemote -ModifyAcls`).
    #[command(name = "modify-acls")]
    ModifyAcls(transfer::ModifyAclsArgs),
    /// Package a narrowed key for the provider (`KeyTransferRemote -Package`).
    #[command(name = "package")]
    Package(transfer::PackageArgs),
    /// Write a key's public half as PEM.
    #[command(name = "public-key")]
    PublicKey(transfer::PublicKeyArgs),
    /// Generate an RSA key to transfer on any module (sensitive, extractable).
    #[command(name = "generate-key")]
    GenerateKey(transfer::GenerateKeyArgs),
}

#[derive(Debug, Subcommand)]
enum VendorCommand {
    /// Make a provider: vendor root, module, world, non-exportable KEK, and the toolset's packages.
    Init(vendor::VendorInitArgs),
}

/// A closed output pipe (`hsmkit nkminfo -k | head -2`) ends the command quietly, as it ends
/// other command-line tools, with the status of a `SIGPIPE` (141), never a panic message.
fn quiet_on_closed_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("");
        if message.contains("Broken pipe") || message.contains("os error 32") {
            std::process::exit(141);
        }
        default(info);
    }));
}

fn main() -> ExitCode {
    quiet_on_closed_pipe();
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::NewWorld(a) => commands::new_world(&cli.global, a),
        Command::Nkminfo(a) => commands::nkminfo(&cli.global, a),
        Command::Generatekey(a) => commands::generatekey(&cli.global, a),
        Command::Cngimport(a) => commands::cngimport(&cli.global, a),
        Command::Aclprint(a) => commands::aclprint(&cli.global, &a.app, &a.ident),
        Command::Preload(a) => commands::preload(&cli.global, a),
        Command::KmfileDump(a) => commands::kmfile_dump(a),
        Command::Bench(a) => bench::run(&cli.global, a),
        Command::Nopclearfail(a) => commands::nopclearfail(&cli.global, a),
        Command::Conform(a) => conform::conform(&cli.global, a),
        Command::InitPin(a) => commands::init_pin(&cli.global, a),
        Command::ConnectAadrmService(a) => aadrm::connect(&cli.global, a),
        Command::GetAadrmConfiguration(a) => aadrm::configuration(&cli.global, a),
        Command::DisconnectAadrmService(a) => aadrm::disconnect(&cli.global, a),
        Command::GetAadrmKeys(a) => aadrm::keys(&cli.global, a),
        Command::AddAadrmKey(a) => aadrm::add_key(&cli.global, a),
        Command::Tenant(a) => tenant::run(&cli.global, a),
        Command::Ceremony(a) => ceremony::run(&cli.global, a),
        Command::Vendor(VendorCommand::Init(a)) => vendor::init(&cli.global, a),
        Command::Verifykeypackage(a) => vendor::verify(a),
        Command::KeyTransferRemote(a) => transfer::key_transfer_remote(&cli.global, a),
        Command::Transfer(TransferCommand::ModifyAcls(a)) => transfer::modify_acls(&cli.global, a),
        Command::Transfer(TransferCommand::Package(a)) => transfer::package(&cli.global, a),
        Command::Transfer(TransferCommand::PublicKey(a)) => transfer::public_key(&cli.global, a),
        Command::Transfer(TransferCommand::GenerateKey(a)) => transfer::generate_key(&cli.global, a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hsmkit: {e}");
            if let Some(h) = e.hint_text() {
                eprintln!("hsmkit: what to do: {h}");
            }
            ExitCode::FAILURE
        }
    }
}
