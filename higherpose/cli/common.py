"""What the command-line tools share: flags anywhere among the `KEY VALUE` config overrides,
config loading that reports the user's mistakes as such, and one `error: ...` line (exit code 2)
instead of a traceback for every UserInputError.
"""
import sys

from higherpose.errors import UserInputError

EXIT_USER_ERROR = 2  # the code argparse uses for usage errors
OVERRIDES_HELP = ("KEY VALUE pairs, before, between or after the flags, e.g. TEST.MODEL_FILE model.pth "
                  "TRAIN.SEED -1 TEST.SCALE_FACTOR '[0.5, 1.0]'")


def parse_with_overrides(parser, argv=None):
    """Parse `argv` with `parser`; the config overrides land in `args.opts`, in their order.

    Only the parser's own flags are taken as flags, so an override value may look like a negative
    number (-1, -1e-3) or a list; any other word that starts with '-' is an unknown flag. Words
    after a lone `--` are overrides whatever they look like.
    """
    if parser.usage is None:  # show the overrides in the usage line and in --help
        parser.usage = " ".join(parser.format_usage().split()[1:]) + " [KEY VALUE ...]"
        parser.add_argument_group("config overrides", OVERRIDES_HELP)
    args, rest = parser.parse_known_args(argv)
    verbatim = []
    if "--" in rest:
        cut = rest.index("--")
        rest, verbatim = rest[:cut], [word for word in rest[cut + 1:] if word != "--"]
    unknown = [word for word in rest if word.startswith("-") and not _is_number(word)]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    args.opts = rest + verbatim
    return args


def _is_number(word):
    try:
        float(word)
    except ValueError:
        return False
    return True


def load_config(cfg_file, opts=()):
    """higherpose.config.load_config; a missing or ambiguous config file, a broken YAML file and a
    bad override (unknown key, odd count, value of the wrong type) raise UserInputError."""
    import yaml

    from higherpose import config

    try:
        return config.load_config(cfg_file, list(opts))
    except FileNotFoundError as err:  # the config name resolves to no file, or to several
        raise UserInputError(str(err)) from None
    except KeyError as err:  # unknown key; str() of a KeyError would add quotes
        raise UserInputError(err.args[0]) from None
    except yaml.YAMLError as err:
        raise UserInputError(f"bad config: {cfg_file} is not valid YAML ({one_line(err)})") from None
    except (ValueError, AssertionError) as err:  # odd override list, wrong value type, stage lists
        raise UserInputError(f"bad config: {err}") from None


def one_line(err):
    return " ".join(str(err).split())


def print_error(err):
    print(f"error: {one_line(err)}", file=sys.stderr)


def exit_with_error(message):
    """For code whose callers expect SystemExit (argument checks): one `error:` line, exit 2."""
    print_error(message)
    raise SystemExit(EXIT_USER_ERROR)


def run_tool(func, *args, **kwargs):
    """Exit status of `func(*args, **kwargs)`: its own when it returns an int, else 0; a
    UserInputError becomes one `error: ...` line on stderr and status 2. Anything else is a bug
    and keeps its traceback."""
    try:
        result = func(*args, **kwargs)
    except UserInputError as err:
        print_error(err)
        return EXIT_USER_ERROR
    return result if isinstance(result, int) and not isinstance(result, bool) else 0
