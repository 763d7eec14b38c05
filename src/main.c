/*
 * main.c - the switchboard command line: one binary, several commands.
 */
#include <stdio.h>
#include <string.h>

#include "cli/keys_cli.h"
#include "serve.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: switchboard <command> [options]\n\n"
            "commands:\n"
            "  serve     run the server (switchboard serve --help for options)\n"
            "  keys      manage API keys on a running server (switchboard keys --help)\n"
            "  token     exchange an API key for a short-lived token\n"
            "  version   print the version\n"
            "  help      show this text\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "serve") == 0)
        return serve_main(argc - 1, argv + 1);
    if (strcmp(argv[1], "keys") == 0)
        return keys_cli_main(argc - 1, argv + 1);
    if (strcmp(argv[1], "token") == 0)
        return keys_cli_token_main(argc - 1, argv + 1);
    if (strcmp(argv[1], "version") == 0 || strcmp(argv[1], "--version") == 0) {
        printf("switchboard %s\n", SWITCHBOARD_VERSION);
        return 0;
    }
    if (strcmp(argv[1], "help") == 0 || strcmp(argv[1], "--help") == 0) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "switchboard: unknown command \"%s\"\n", argv[1]);
    usage(stderr);
    return 2;
}
