package ai.llava.it.shared;

import java.util.List;

/** The qc-inspection preset's answer, as its schema spells it. */
public record QcReport(String verdict, List<Defect> defects) {

    public record Defect(String kind, String location) {
    }
}
