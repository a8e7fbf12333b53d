/**
 * `flexinfer` command line: dispatches to one module per command.
 */
export async function main(argv: string[]): Promise<number> {
  const [command] = argv;
  if (!command || command === '--help' || command === '-h' || command === 'help') {
    process.stdout.write(usage());
    return 0;
  }
  process.stderr.write(`flexinfer: unknown command '${command}'\n\n${usage()}`);
  return 2;
}

function usage(): string {
  return `Usage: flexinfer <command> [options]

Commands:
  synth     write a random-weight GGUF with the shapes and tokenizer of a public model
  inspect   show a GGUF file's architecture, tokenizer and tensors
`;
}
