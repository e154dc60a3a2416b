// `payoutd migrate-state --from sqlite:PATH --to postgresql:URL`: the command around
// MigrateState (core/store/migrate.h). Parses its options, prints what moved, returns the exit
// code (0 moved; 2 usage; 1 anything else, e.g. a target that is not empty).
#pragma once

#include <string>
#include <vector>

namespace payoutd {

// `args`: what follows "migrate-state" on the command line.
int MigrateStateCommand(const std::vector<std::string>& args);

}  // namespace payoutd
