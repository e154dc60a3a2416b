# bash completion for payoutd(8). Installed as share/bash-completion/completions/payoutd; from a
# source tree: source docs/completion/payoutd.bash
#
# Completes subcommands, their options, batch files (validate, process) and batch names (status,
# approve, hold, resume, cancel). Batch names are the *.csv files found in the spool's inbox/,
# work/ and approval/ folders (done/ too for status); the spool is `dir:` under `spool:` in the
# configuration named by --config (default /etc/payoutd/payoutd.yaml). Folders the user cannot read
# simply contribute nothing. Works with or without the bash-completion package.

# The configuration file named on the command line, else the default.
_payoutd_config_file() {
  local i w config=/etc/payoutd/payoutd.yaml
  for ((i = 1; i < ${#COMP_WORDS[@]}; i++)); do
    w=${COMP_WORDS[i]}
    if [[ $w == --config ]]; then
      # bash splits "--config=FILE" into "--config" "=" "FILE".
      if [[ ${COMP_WORDS[i + 1]-} == = ]]; then
        config=${COMP_WORDS[i + 2]-}
      else
        config=${COMP_WORDS[i + 1]-}
      fi
    elif [[ $w == --config=* ]]; then
      config=${w#--config=}
    fi
  done
  [[ $config == "~/"* ]] && config=$HOME/${config#"~/"}
  printf '%s\n' "$config"
}

# spool.dir from the configuration: the first `dir:` indented under a top-level `spool:` key.
# A relative path is relative to the configuration's folder, as payoutd takes it.
_payoutd_spool_dir() {
  local config dir
  config=$(_payoutd_config_file)
  [[ -r $config ]] || return 0
  dir=$(awk '
    /^[^[:space:]#]/ { in_spool = ($0 ~ /^spool:[[:space:]]*(#.*)?$/); next }
    in_spool && /^[[:space:]]+dir:/ {
      sub(/^[[:space:]]+dir:[[:space:]]*/, ""); sub(/[[:space:]]+#.*$/, "")
      gsub(/^["\047]|["\047][[:space:]]*$/, ""); print; exit
    }' "$config" 2>/dev/null)
  [[ -n $dir ]] || return 0
  [[ $dir == /* ]] || dir=$(dirname -- "$config")/$dir
  printf '%s\n' "$dir"
}

# Batch ids (file names without .csv) in the given spool folders.
_payoutd_batches() {
  local spool sub f
  spool=$(_payoutd_spool_dir)
  [[ -n $spool ]] || return 0
  for sub in "$@"; do
    for f in "$spool/$sub"/*.csv; do
      [[ -f $f ]] || continue
      f=${f##*/}
      f=${f%.csv}
      # done/ also holds <batch>.results.csv (and <batch>.input.csv after a name clash).
      [[ $f == *.results || $f == *.input || $f == *.errors ]] && continue
      printf '%s\n' "$f"
    done
  done | sort -u
}

_payoutd_files() {  # $1: extension pattern (extglob), e.g. csv or @(yaml|yml); empty for any file
  if declare -F _filedir > /dev/null; then
    _filedir "$1"
  else
    local IFS=$'\n'
    if [[ -n $1 ]]; then
      COMPREPLY=($(shopt -s extglob; compgen -f -X "!*.$1" -- "$cur"; compgen -d -- "$cur"))
    else
      COMPREPLY=($(compgen -f -- "$cur"))
    fi
  fi
}

_payoutd_dirs() {
  if declare -F _filedir > /dev/null; then
    _filedir -d
  else
    local IFS=$'\n'
    COMPREPLY=($(compgen -d -- "$cur"))
  fi
}

_payoutd() {
  local cur prev words cword split=false
  if declare -F _init_completion > /dev/null; then
    _init_completion -s || return
  else
    words=("${COMP_WORDS[@]}")
    cword=$COMP_CWORD
    cur=${COMP_WORDS[COMP_CWORD]}
    prev=${COMP_WORDS[COMP_CWORD - 1]-}
    if [[ $cur == = && $prev == --* ]]; then
      cur=""
    elif [[ $prev == = ]] && ((COMP_CWORD >= 2)); then
      prev=${COMP_WORDS[COMP_CWORD - 2]}
      split=true
    fi
  fi

  local commands="run check validate process status approve hold resume cancel migrate-state help"
  if ((cword <= 1)); then
    COMPREPLY=($(compgen -W "$commands --help --version" -- "$cur"))
    return
  fi
  local cmd=${words[1]}

  case $prev in
    --config)
      _payoutd_files '@(yaml|yml)'
      return ;;
    --out)
      _payoutd_dirs
      return ;;
    --key)
      _payoutd_files ''
      return ;;
    --from)
      COMPREPLY=($(compgen -W "sqlite:" -- "$cur"))
      compopt -o nospace 2> /dev/null
      return ;;
    --to)
      COMPREPLY=($(compgen -W "postgresql://" -- "$cur"))
      compopt -o nospace 2> /dev/null
      return ;;
    --reason)
      return ;;
    --interval)
      COMPREPLY=($(compgen -W "500ms 1s 2s 5s 10s" -- "$cur"))
      return ;;
  esac
  $split && return

  local opts="--config --help" batches=""
  case $cmd in
    run | check) ;;
    validate) ;;
    process) opts+=" --out" ;;
    status)
      opts+=" --json --watch --interval"
      batches=$(_payoutd_batches inbox work approval done) ;;
    approve)
      opts+=" --key --yes"
      batches=$(_payoutd_batches approval) ;;
    hold | resume)
      opts+=" --all --reason --timeout"
      batches=$(_payoutd_batches inbox work approval) ;;
    cancel)
      opts+=" --reason --timeout"
      batches=$(_payoutd_batches inbox work approval) ;;
    migrate-state) opts+=" --from --to" ;;
    *) return ;;  # help, or an unknown command
  esac

  if [[ $cur == -* ]]; then
    COMPREPLY=($(compgen -W "$opts" -- "$cur"))
    [[ ${COMPREPLY-} == *= ]] && compopt -o nospace 2> /dev/null
    return
  fi
  case $cmd in
    validate | process) _payoutd_files csv ;;
    status | approve | hold | resume | cancel)
      COMPREPLY=($(compgen -W "$batches" -- "$cur")) ;;
  esac
}
complete -F _payoutd payoutd
