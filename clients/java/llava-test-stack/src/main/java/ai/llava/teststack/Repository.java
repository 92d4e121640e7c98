package ai.llava.teststack;

import java.nio.file.Files;
import java.nio.file.Path;

/** The project's checkout (the Java build lives in clients/java of it) and its Python. */
final class Repository {

    private Repository() {
    }

    /** The nearest folder above the working directory that holds stack.py and harness/serve.py. */
    static Path root() {
        for (Path dir = Path.of("").toAbsolutePath(); dir != null; dir = dir.getParent()) {
            if (Files.isRegularFile(dir.resolve("stack.py")) && Files.isRegularFile(dir.resolve("harness/serve.py"))) {
                return dir;
            }
        }
        throw new IllegalStateException("no project checkout (stack.py, harness/serve.py) above "
                + Path.of("").toAbsolutePath() + ": run the build from clients/java of the repository");
    }

    /** LLAVA_PYTHON, else the project's .venv, which `make install` creates. */
    static Path python(Path root) {
        String given = System.getenv("LLAVA_PYTHON");
        Path python = given != null && !given.isBlank() ? Path.of(given) : root.resolve(".venv/bin/python");
        if (!Files.isExecutable(python)) {
            throw new IllegalStateException(python + " is missing: run `make install` in " + root
                    + " first (the demo stack runs in the project's virtual environment), or set LLAVA_PYTHON");
        }
        return python;
    }
}
